"""An outbox table made before it carried events: its check says how to migrate it."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, Table

from freshcache import ConfigurationError
from freshcache.integrations.sqlalchemy import outbox_table
from freshcache.integrations.sqlalchemy._outbox import require_outbox

from .databases import Database


def test_an_outbox_without_the_events_column_says_how_to_migrate(database: Database) -> None:
    """An outbox table without the events column fails its check with the ALTER TABLE to run."""
    outbox = outbox_table(MetaData())
    old = Table(
        outbox.name,
        MetaData(),
        *[
            Column(c.name, c.type, primary_key=c.primary_key)
            for c in outbox.columns
            if c.name != "events"
        ],
    )
    engine = database.engine()
    old.metadata.create_all(engine)
    with engine.connect() as connection:
        with pytest.raises(
            ConfigurationError,
            match="lacks the columns events: migrate it with\nALTER TABLE freshcache_outbox ADD COLUMN events TEXT",
        ):
            require_outbox(connection, outbox)
        connection.exec_driver_sql("ALTER TABLE freshcache_outbox ADD COLUMN events TEXT")
        require_outbox(connection, outbox)
    engine.dispose()
