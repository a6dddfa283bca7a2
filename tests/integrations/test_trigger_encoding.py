"""PostgreSQL's triggers encode values into tags exactly as the application does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, ForeignKey, MetaData, String, delete, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from freshcache.integrations.sqlalchemy import outbox_table, rules_from_models
from freshcache.integrations.sqlalchemy.triggers import install_triggers

from .conftest import Database


class Base(DeclarativeBase):
    metadata = MetaData()


class Owner(Base):
    __tablename__ = "owners"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    active: Mapped[bool] = mapped_column(default=True)


class Doc(Base):
    __tablename__ = "docs"
    slug: Mapped[str] = mapped_column(String(1000), primary_key=True)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("owners.id"))
    title: Mapped[str] = mapped_column(String(200))


OUTBOX = outbox_table(Base.metadata)
RULES = (
    rules_from_models([Owner, Doc])
    .entity("doc", tags=["title:{title}"])
    .entity("owner", tags=["active:{active}"])
)
OWNER = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
SLUGS = ["plain-slug_1.~", "", "Zoë Ünal's page", "50% {x}*?[a]:b\\", "中文 😀", "é" * 300]


@pytest.fixture
def engine(postgres: Database) -> Iterator[Engine]:
    engine = postgres.engine()
    Base.metadata.create_all(engine)
    install_triggers(engine, RULES, [Owner, Doc], OUTBOX)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO owners (id, active) VALUES (:id, true)"), {"id": OWNER}
        )
        connection.execute(delete(OUTBOX))
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "slug", SLUGS, ids=["plain", "empty", "accents", "syntax", "emoji", "long"]
)
def test_a_trigger_writes_the_tags_the_rules_give(engine: Engine, slug: str) -> None:
    """A raw INSERT of a row with a tricky text key and a UUID foreign key outboxes the tags Rules.tags_for gives."""
    row = {"slug": slug, "owner_id": OWNER, "title": slug[:200]}
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO docs (slug, owner_id, title) VALUES (:slug, :owner_id, :title)"),
            row,
        )
        written = connection.execute(select(OUTBOX.c.tags)).scalar_one()
    assert set(RULES.tags_for("doc", new=row)) == set(json.loads(written))


def test_uuid_and_bool_columns_format_alike(engine: Engine) -> None:
    """A raw UPDATE of a UUID-keyed row's bool column outboxes the tags Rules.tags_for gives (``true``/``false``)."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE owners SET active = false WHERE id = :id"), {"id": OWNER})
        written = connection.execute(select(OUTBOX.c.tags)).scalar_one()
    expected = RULES.tags_for("owner", old={"id": OWNER, "active": True}, new={"active": False})
    assert {"active:true", "active:false", f"owner:{OWNER}"} <= set(expected)
    assert set(expected) == set(json.loads(written))
