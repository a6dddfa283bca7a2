"""freshcache for SQLAlchemy: invalidation on commit, strict two-phase mode, a transactional outbox.

::

    from freshcache.integrations.sqlalchemy import SessionInvalidation, outbox_table

    outbox = outbox_table(Base.metadata)
    relay = AsyncOutboxRelay(engine, manager, outbox)
    SessionInvalidation(manager, outbox=outbox, relay=relay).install(sessions)
"""

from freshcache._extras import missing_extra

try:
    import sqlalchemy  # noqa: F401 - only to name the extra when it is missing
except ImportError as exc:
    raise missing_extra(exc, "sqlalchemy", "freshcache.integrations.sqlalchemy") from exc

from freshcache.integrations.sqlalchemy._async.relay import AsyncOutboxRelay
from freshcache.integrations.sqlalchemy._async.repository import AsyncBaseRepository
from freshcache.integrations.sqlalchemy._hooks import SessionInvalidation
from freshcache.integrations.sqlalchemy._models import entity_type_of, rules_from_models, values_of
from freshcache.integrations.sqlalchemy._outbox import OUTBOX_TABLE, outbox_table
from freshcache.integrations.sqlalchemy._sync.relay import OutboxRelay
from freshcache.integrations.sqlalchemy._sync.repository import BaseRepository

__all__ = [
    "OUTBOX_TABLE",
    "AsyncBaseRepository",
    "AsyncOutboxRelay",
    "BaseRepository",
    "OutboxRelay",
    "SessionInvalidation",
    "entity_type_of",
    "outbox_table",
    "rules_from_models",
    "values_of",
]
