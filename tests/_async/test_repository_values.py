"""Entities through a repository: a miss and a hit give equal objects, for every column type SQLAlchemy maps by default."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Text,
    Time,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from freshcache import AsyncCache
from freshcache.integrations.sqlalchemy import AsyncBaseRepository
from freshcache.integrations.sqlalchemy._orm import async_sessionmaker

from ..integrations.support import async_create_tables


class Base(DeclarativeBase):
    pass


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Sample(Base):
    __tablename__ = "value_sample"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    big: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(50))
    text: Mapped[str] = mapped_column(Text)
    flag: Mapped[bool] = mapped_column(Boolean)
    ratio: Mapped[float] = mapped_column(Float)
    price: Mapped[decimal.Decimal] = mapped_column(Numeric(12, 2))
    day: Mapped[datetime.date] = mapped_column(Date)
    at: Mapped[datetime.datetime] = mapped_column(DateTime)
    at_zone: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    clock: Mapped[datetime.time] = mapped_column(Time)
    span: Mapped[datetime.timedelta] = mapped_column(Interval)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    uid: Mapped[uuid.UUID] = mapped_column(Uuid)
    mood: Mapped[Mood] = mapped_column(Enum(Mood))
    size: Mapped[str] = mapped_column(Enum("small", "large", name="sample_size"))
    doc: Mapped[Any] = mapped_column(JSON)
    absent: Mapped[str | None] = mapped_column(String(10), nullable=True)


VALUES: dict[str, Any] = {
    "big": 2**62 + 1,
    "name": "Zoë",
    "text": "line one\nline two 🎉",
    "flag": True,
    "ratio": 0.1,
    "price": decimal.Decimal("12345.60"),
    "day": datetime.date(2024, 2, 29),
    "at": datetime.datetime(2024, 5, 1, 12, 30, 15, 123456),
    "at_zone": datetime.datetime(
        2024, 5, 1, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    ),
    "clock": datetime.time(23, 59, 58),
    "span": datetime.timedelta(days=3, seconds=7, microseconds=11),
    "blob": b"\x00\xff binary",
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "mood": Mood.SAD,
    "size": "large",
    "doc": {"list": [1, 2.5, None, "x"], "nested": {"ok": True}},
    "absent": None,
}


class Samples(AsyncBaseRepository[Sample]):
    model = Sample


def attributes(entity: Sample) -> dict[str, tuple[Any, type]]:
    """Every column attribute with its type (and a datetime's offset), to compare two entities."""
    out: dict[str, tuple[Any, type]] = {}
    for key in VALUES:
        value = getattr(entity, key)
        out[key] = (value, type(value))
        if isinstance(value, datetime.datetime):
            out[f"{key}.utcoffset"] = (value.utcoffset(), type(value.tzinfo))
    return out


@pytest.fixture(params=["sqlite+memory", "postgresql+redis"])
async def samples(request: pytest.FixtureRequest) -> AsyncIterator[Samples]:
    database_kind, backend = request.param.split("+")
    database = request.getfixturevalue("sqlite" if database_kind == "sqlite" else "postgres")
    if backend == "memory":
        url = "memory://"
    else:
        url = f"{request.getfixturevalue('redis_url')}?namespace={request.getfixturevalue('namespace')}"
    engine = database.async_engine()
    await async_create_tables(engine, Base.metadata)
    cache = AsyncCache.from_url(url)
    try:
        yield Samples(async_sessionmaker(engine, expire_on_commit=False), cache)
    finally:
        await cache.aclose()
        await engine.dispose()


async def test_an_entity_is_the_same_on_a_miss_and_on_a_hit(samples: Samples) -> None:
    """get returns equal column values of equal types on the miss and on the hit after it."""
    added = await samples.add(**VALUES)

    missed = await samples.get(added.id)
    hit = await samples.get(added.id)

    assert missed is not None
    assert hit is not None
    assert (1, 1) == (samples.cache.metrics.sets, samples.cache.metrics.hits)
    assert attributes(missed) == attributes(hit)
    assert Mood.SAD is hit.mood


async def test_a_list_is_the_same_on_a_miss_and_on_a_hit(samples: Samples) -> None:
    """list returns entities with equal column values of equal types on the miss and on the hit."""
    await samples.add(**VALUES)
    await samples.add(**{**VALUES, "mood": Mood.HAPPY, "price": decimal.Decimal("-0.01")})

    missed = await samples.list()
    hit = await samples.list()

    assert 1 == samples.cache.metrics.hits
    assert [attributes(entity) for entity in missed] == [attributes(entity) for entity in hit]
    assert [Mood.SAD, Mood.HAPPY] == [entity.mood for entity in hit]
