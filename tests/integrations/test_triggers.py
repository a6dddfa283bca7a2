"""PostgreSQL triggers: writes that bypass the application still invalidate, through the outbox."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    ForeignKey,
    MetaData,
    String,
    Text,
    create_engine,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from freshcache import (
    MISSING,
    AsyncCache,
    AsyncInvalidationManager,
    Cache,
    ConfigurationError,
    InvalidationManager,
    Rules,
)
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    AsyncOutboxRelay,
    OutboxRelay,
    SessionInvalidation,
    entity_type_of,
    outbox_table,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._models import column_keys, mapper_of
from freshcache.integrations.sqlalchemy.triggers import (
    drop_triggers,
    install_triggers,
    trigger_ddl,
)

from ..conftest import DATABASE_URL
from .conftest import Database
from .models import MODELS, Base, Challenge, User

OUTBOX = outbox_table(MetaData())


def reference_rules() -> Rules:
    rules = rules_from_models(MODELS)
    rules.entity("user", tags=["leaderboard"], fields={"name", "score"})
    return rules


# Odd names: quoted identifiers, a reserved word, attribute keys unlike their columns.


class OddBase(DeclarativeBase):
    metadata = MetaData()


class Account(OddBase):
    __tablename__ = "Odd Accounts"
    id: Mapped[int] = mapped_column("Account ID", primary_key=True)
    handle: Mapped[str] = mapped_column("select", String(50))
    region: Mapped[str | None] = mapped_column("Region", String(20))
    balance: Mapped[float] = mapped_column(Float, default=0.0)


class Note(OddBase):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column("Owner", ForeignKey("Odd Accounts.Account ID"))
    body: Mapped[str] = mapped_column(Text)


ODD_MODELS = [Account, Note]


def odd_rules() -> Rules:
    rules = Rules()
    rules.entity("account", tags=["account:{id}", "handle:{handle}", "50%$:{id}"])
    rules.entity("account", tags=["region:{region}:accounts"], fields={"region"})
    rules.entity("note", tags=["note:{id}"])
    rules.relation("note", "account", keys={"id": "account_id"}, fields={"account_id"})
    return rules


# Fixtures and helpers


@pytest.fixture
def engine(postgres: Database) -> Iterator[Engine]:
    """The reference tables and the outbox in the test's schema, with the triggers installed."""
    engine = postgres.engine()
    Base.metadata.create_all(engine)
    OddBase.metadata.create_all(engine)
    OUTBOX.metadata.create_all(engine)
    install_triggers(engine, reference_rules(), MODELS, OUTBOX)
    yield engine
    engine.dispose()


def outbox_rows(connection: Connection, source: str | None = "trigger") -> list[Any]:
    query = select(OUTBOX).order_by(OUTBOX.c.created_at)
    if source is not None:
        query = query.where(OUTBOX.c.source == source)
    return list(connection.execute(query))


def tags_of(rows: Iterable[Any]) -> set[str]:
    return {tag for row in rows for tag in json.loads(row.tags)}


def snapshot(connection: Connection, models: Iterable[type[Any]]) -> dict[Any, dict[str, Any]]:
    """Every row of the models' tables by (entity type, primary key), keyed by attribute."""
    rows = {}
    for model in models:
        mapper = mapper_of(model)
        primary = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        query = select(*[getattr(model, key).label(key) for key in column_keys(model)])
        for row in connection.execute(query):
            values = row._asdict()
            rows[(entity_type_of(model), tuple(values[k] for k in primary))] = values
    return rows


def check_statements(
    engine: Engine, rules: Rules, models: list[type[Any]], statements: list[str]
) -> None:
    """Each statement's trigger rows hold exactly the tags rules.tags_for gives for its changes."""
    for statement in statements:
        with engine.begin() as connection:
            before = snapshot(connection, models)
            connection.exec_driver_sql(statement)
            after = snapshot(connection, models)
            expected: set[str] = set()
            events = set()
            for key in before.keys() | after.keys():
                old, new = before.get(key), after.get(key)
                if old != new:
                    expected.update(rules.tags_for(key[0], old=old, new=new))
                    kind = "insert" if old is None else "delete" if new is None else "update"
                    events.add((key[0], kind))
            rows = outbox_rows(connection)
            assert (statement, expected) == (statement, tags_of(rows))
            assert len(events) == len(rows), statement  # one row per table and statement
            assert {entity for entity, _ in events} == {
                entity for row in rows for entity in json.loads(row.entity_types)
            }
            connection.execute(delete(OUTBOX))


def seed(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, score) VALUES"
            " (1, 'ada@x', 'Ada', 10), (2, 'bob@x', 'Bob', 5), (3, 'cy@x', 'Cy', 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO challenges (id, user_id, title) VALUES (1, 1, 'a'), (2, 2, 'b')"
        )
        connection.execute(delete(OUTBOX))


# Tests


async def test_raw_update_invalidates_through_the_relay(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """A raw UPDATE outside the application reaches the cache within the relay's interval."""
    rules = reference_rules()
    async_engine = postgres.async_engine()
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    manager = AsyncInvalidationManager(cache, rules)
    relay = AsyncOutboxRelay(async_engine, manager, OUTBOX, grace=0, interval=0.1)

    class Users(AsyncBaseRepository[User]):
        model = User

    users = Users(async_sessionmaker(async_engine), cache)

    async def name_of(user_id: int) -> str:
        user = await users.get(user_id)
        assert user is not None
        return user.name

    try:
        async with async_engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            await connection.run_sync(OUTBOX.metadata.create_all)
            await connection.run_sync(install_triggers, rules, MODELS, OUTBOX)
        async with async_engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (id, email, name, score) VALUES (1, 'ada@x', 'Ada', 0)")
            )
        assert "Ada" == await name_of(1)
        async with async_engine.begin() as connection:
            await connection.execute(text("UPDATE users SET name = 'Grace' WHERE id = 1"))
        assert "Ada" == await name_of(1)  # stale until the relay applies the trigger's row

        relay.start()
        deadline = time.monotonic() + relay.interval + 2.0
        while relay.relayed_rows < 2:  # the insert's row and the update's
            assert time.monotonic() < deadline, "the relay did not apply the rows in time"
            await asyncio.sleep(0.02)
        assert MISSING is await cache.get(users.tag_for(1), MISSING)
        assert "Grace" == await name_of(1)
    finally:
        await relay.aclose()
        await cache.aclose()
        await async_engine.dispose()


def test_trigger_tags_equal_the_rules_tags(engine: Engine) -> None:
    """Raw inserts, updates (moves, nulls, upserts) and deletes (cascading) write the tags Rules gives."""
    check_statements(
        engine,
        reference_rules(),
        MODELS,
        [
            "INSERT INTO users (id, email, name, score) VALUES"
            " (1, 'ada@x', 'Ada', 10), (2, 'bob@x', 'Bob', 5), (3, 'cy@x', 'Cy', 0)",
            "INSERT INTO challenges (id, user_id, title) VALUES"
            " (1, 1, 'a'), (2, 1, 'b'), (3, NULL, 'c'), (4, 2, 'd')",
            "INSERT INTO evaluations (id, challenge_id, user_id, score) VALUES"
            " (1, 1, 2, 7), (2, 1, 3, 8), (3, 4, 1, 9)",
            "UPDATE users SET name = 'Ada L.' WHERE id = 1",
            "UPDATE users SET email = 'bob@y' WHERE id = 2",
            "UPDATE users SET score = score + 1, email = email || '.org' WHERE id IN (2, 3)",
            "UPDATE challenges SET user_id = 2 WHERE id = 1",
            "UPDATE challenges SET user_id = NULL WHERE id = 2",
            "UPDATE challenges SET user_id = 1 WHERE id = 3",
            "UPDATE challenges SET title = title || '!'",
            "UPDATE evaluations SET challenge_id = 4, user_id = 2 WHERE id = 2",
            "INSERT INTO users (id, email, name, score) VALUES (3, 'cy@x', 'Cyril', 1)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            "DELETE FROM evaluations WHERE id = 1",
            "DELETE FROM users WHERE id = 2",
            "UPDATE users SET name = 'nobody' WHERE id = 999",
            "DELETE FROM challenges WHERE user_id IS NULL",
        ],
    )


def test_quoted_names_and_mapped_keys(engine: Engine) -> None:
    """Tables and columns needing quotes, and attribute keys unlike column names, give Rules' tags."""
    rules = odd_rules()
    install_triggers(engine, rules, ODD_MODELS, OUTBOX)
    check_statements(
        engine,
        rules,
        ODD_MODELS,
        [
            'INSERT INTO "Odd Accounts" ("Account ID", "select", "Region", balance) VALUES'
            " (1, 'ada', 'eu', 0), (2, 'bob', NULL, 0)",
            "INSERT INTO notes (id, \"Owner\", body) VALUES (1, 1, 'x'), (2, NULL, 'y')",
            'UPDATE "Odd Accounts" SET "Region" = \'us\' WHERE "Account ID" = 1',
            'UPDATE "Odd Accounts" SET "Region" = \'eu\' WHERE "Region" IS NULL',
            'UPDATE "Odd Accounts" SET balance = 3',
            "UPDATE notes SET body = 'z'",
            'UPDATE notes SET "Owner" = 2 WHERE id = 1',
            'UPDATE notes SET "Owner" = 1 WHERE "Owner" IS NULL',
            'DELETE FROM notes WHERE "Owner" = 1',
        ],
    )


def test_field_level_rule_ignores_other_columns(engine: Engine) -> None:
    """A raw UPDATE of a column outside a field-level rule leaves that rule's tags alone."""
    seed(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET email = 'ada@y' WHERE id = 1")
        assert {"user:1", "user"} == tags_of(outbox_rows(connection))
        connection.execute(delete(OUTBOX))
        connection.exec_driver_sql("UPDATE users SET score = score WHERE id = 1")
        assert {"user:1", "user"} == tags_of(outbox_rows(connection))
        connection.execute(delete(OUTBOX))
        connection.exec_driver_sql("UPDATE users SET score = 11 WHERE id = 1")
        assert {"user:1", "user", "leaderboard"} == tags_of(outbox_rows(connection))


def test_primary_key_change_over_invalidates(engine: Engine) -> None:
    """A row whose primary key changed has no partner: its field-level rules fire too, never fewer tags."""
    seed(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET id = 10 WHERE id = 3")
        written = tags_of(outbox_rows(connection))
    rules = reference_rules()
    expected = set(
        rules.tags_for(
            "user",
            old={"id": 3, "email": "cy@x", "name": "Cy", "score": 0},
            new={"id": 10, "email": "cy@x", "name": "Cy", "score": 0},
        )
    )
    assert {"leaderboard"} == written - expected
    assert expected <= written


def test_truncate_writes_the_deleted_rows_tags(engine: Engine) -> None:
    """TRUNCATE, which fires no delete trigger, writes the tags of the rows it removes, cascades included."""
    seed(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE users CASCADE")
        rows = outbox_rows(connection)
    assert [["challenge"], ["user"]] == sorted(json.loads(row.entity_types) for row in rows)
    assert {
        "user:1",
        "user:2",
        "user:3",
        "user",
        "leaderboard",
        "challenge:1",
        "challenge:2",
        "challenge",
        "user:1:challenges",
        "user:2:challenges",
    } == tags_of(rows)


def test_writers_with_another_search_path_reach_the_outbox(
    engine: Engine, postgres: Database
) -> None:
    """Another service whose search_path does not hold the schema still writes to its outbox."""
    seed(engine)
    other = create_engine(DATABASE_URL)
    try:
        with other.begin() as connection:
            connection.exec_driver_sql(f"UPDATE \"{postgres.schema}\".users SET name = 'X'")
    finally:
        other.dispose()
    with engine.connect() as connection:
        assert {"user:1", "user:2", "user:3", "user", "leaderboard"} == tags_of(
            outbox_rows(connection)
        )


def test_a_value_outside_the_tag_alphabet_is_encoded(engine: Engine) -> None:
    """A value with a space is percent-encoded into the tag, as the application encodes it, not refused."""
    install_triggers(engine, odd_rules(), ODD_MODELS, OUTBOX)
    with engine.begin() as c:
        c.exec_driver_sql(
            'INSERT INTO "Odd Accounts" ("Account ID", "select", balance) VALUES (1, \'two words\', 0)'
        )
    with engine.connect() as connection:
        assert "handle:two%20words" in tags_of(outbox_rows(connection))


def test_application_transactions_write_no_trigger_rows(
    engine: Engine, redis_url: str, namespace: str
) -> None:
    """A session with database_triggers=True writes only its own outbox row; without it, triggers fire."""
    seed(engine)
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    manager = InvalidationManager(cache, reference_rules())
    try:
        marked = sessionmaker(engine)
        SessionInvalidation(manager, outbox=OUTBOX, database_triggers=True).install(marked)
        with marked.begin() as session:
            session.add(User(id=4, email="dee@x", name="Dee"))
            session.get_one(Challenge, 1).user_id = 2
            session.execute(update(User).where(User.id <= 2).values(score=User.score + 1))
        with engine.begin() as connection:
            assert ["transaction"] == [row.source for row in outbox_rows(connection, None)]
            connection.execute(delete(OUTBOX))

        unmarked = sessionmaker(engine)
        SessionInvalidation(manager, outbox=OUTBOX).install(unmarked)
        with unmarked.begin() as session:
            session.get_one(Challenge, 1).user_id = 1
        with engine.connect() as connection:
            sources = sorted(row.source for row in outbox_rows(connection, None))
        assert ["transaction", "trigger"] == sources
    finally:
        cache.close()


def test_bulk_update_writes_one_row_and_is_relayed(
    engine: Engine, redis_url: str, namespace: str
) -> None:
    """1,000 rows inserted then updated by two statements give two outbox rows, which the relay applies."""
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    manager = InvalidationManager(cache, reference_rules())
    relay = OutboxRelay(engine, manager, OUTBOX, grace=0)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO users (id, email, name, score)"
                " SELECT g, 'u' || g || '@x', 'U' || g, 0 FROM generate_series(1, 1000) AS g"
            )
        assert 1 == relay.run_once()
        assert 0 == cache.get_or_load("user:500", lambda: 0, tags=["user:500"])
        assert "board" == cache.get_or_load("board", lambda: "board", tags=["leaderboard"])

        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE users SET score = score + 1")
        with engine.connect() as connection:
            rows = outbox_rows(connection)
        assert 1 == len(rows)
        assert 1002 == len(json.loads(rows[0].tags))  # user:1..1000, user, leaderboard

        assert 1 == relay.run_once()
        assert MISSING is cache.get("user:500", MISSING)
        assert MISSING is cache.get("board", MISSING)
        with engine.connect() as connection:
            assert [] == outbox_rows(connection, None)
    finally:
        relay.close()
        cache.close()


def test_install_is_idempotent_and_drop_removes_everything(engine: Engine) -> None:
    """Installing twice leaves one set of triggers; dropping them leaves raw writes unrecorded."""
    install_triggers(engine, reference_rules(), MODELS, OUTBOX)
    seed(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET name = 'Y' WHERE id = 1")
        assert 1 == len(outbox_rows(connection))
        connection.execute(delete(OUTBOX))

    drop_triggers(engine, MODELS)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET name = 'Z' WHERE id = 1")
        connection.exec_driver_sql("INSERT INTO challenges (id, user_id, title) VALUES (9, 1, 'n')")
        connection.exec_driver_sql("DELETE FROM challenges WHERE id = 1")
        connection.exec_driver_sql("TRUNCATE evaluations")
        assert [] == outbox_rows(connection, None)
        leftovers = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'freshcache%%'"
            " AND pronamespace = current_schema()::regnamespace"
        ).scalar_one()
        triggers = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'freshcache%%'"
            " AND tgrelid IN ('users'::regclass, 'challenges'::regclass, 'evaluations'::regclass)"
        ).scalar_one()
    assert (0, 0) == (leftovers, triggers)
    drop_triggers(engine, MODELS)  # dropping what is not there is fine


def test_configuration_errors() -> None:
    """Placeholders on unknown columns or ones that do not format like Python, and other databases, are refused."""
    rules = Rules().entity("account", tags=["balance:{balance}"])
    with pytest.raises(ConfigurationError, match="float column"):
        trigger_ddl(rules, ODD_MODELS, OUTBOX)
    rules = Rules().entity("account", tags=["account:{nope}"])
    with pytest.raises(ConfigurationError, match="not a column attribute"):
        trigger_ddl(rules, ODD_MODELS, OUTBOX)
    only_wide = Rules().entity("account", tags=["accounts"])
    only_wide.relation("note", "account", keys={"id": "account_id"})
    assert all("notes" not in statement for statement in trigger_ddl(only_wide, ODD_MODELS, OUTBOX))
    sqlite = create_engine("sqlite://")
    try:
        with pytest.raises(ConfigurationError, match="for PostgreSQL, not sqlite"):
            install_triggers(sqlite, reference_rules(), MODELS, OUTBOX)
    finally:
        sqlite.dispose()
