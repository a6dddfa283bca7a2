"""``freshcache relay``: apply the outbox rows that writers left behind (a crash, a cache
outage) and delete them; run it beside the application, as many times as you like on
PostgreSQL (relays share the rows with FOR UPDATE SKIP LOCKED).

A database that cannot be reached or an outbox table that is missing at start is one
line and a non-zero exit; once running, a failed pass is logged and retried with a
growing delay, and SIGTERM or SIGINT ends the command cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from freshcache._exceptions import ConfigurationError, FreshcacheError
from freshcache.cli._failures import Unreachable

log = logging.getLogger("freshcache")


def add_parser(commands: Any) -> None:
    """The ``relay`` command and its options, on ``commands`` (argparse's subparsers)."""
    relay = commands.add_parser("relay", help="apply and delete outbox rows left behind")
    relay.add_argument(
        "--database-url",
        default=os.environ.get("FRESHCACHE_DATABASE_URL"),
        required="FRESHCACHE_DATABASE_URL" not in os.environ,
        help="SQLAlchemy URL of the database holding the outbox (env FRESHCACHE_DATABASE_URL)",
    )
    relay.add_argument(
        "--cache-url",
        default=os.environ.get("FRESHCACHE_CACHE_URL"),
        required="FRESHCACHE_CACHE_URL" not in os.environ,
        help="redis://host:port/db?namespace=... of the cache (env FRESHCACHE_CACHE_URL)",
    )
    relay.add_argument("--table", default="freshcache_outbox", help="the outbox table's name")
    relay.add_argument(
        "--events-url",
        default=os.environ.get("FRESHCACHE_EVENTS_URL"),
        help="redis://... of the event stream to publish the rows' events to "
        "(env FRESHCACHE_EVENTS_URL); without it, rows carrying events are left pending",
    )
    relay.add_argument("--events-namespace", default="fc", help="the event stream's namespace")
    relay.add_argument(
        "--grace", type=float, default=5.0, help="seconds a row is left to its writer"
    )
    relay.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    relay.add_argument("--batch-size", type=int, default=1000, help="rows claimed per transaction")
    relay.add_argument("--once", action="store_true", help="one pass, then exit")
    relay.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    try:
        # First, so that a missing sqlalchemy is reported with the extra to install.
        from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table
    except ImportError as exc:
        raise ConfigurationError(str(exc)) from None
    from sqlalchemy import MetaData
    from sqlalchemy.exc import SQLAlchemyError

    from freshcache import Cache, InvalidationManager
    from freshcache.integrations.sqlalchemy._errors import reason_of
    from freshcache.integrations.sqlalchemy._outbox import retry_delay

    table = outbox_table(MetaData(), arguments.table)
    cache = Cache.from_url(arguments.cache_url)  # checks the URL; connects at first use
    engine = _engine(arguments.database_url, table)
    manager = InvalidationManager(cache)
    bus = _events_bus(arguments.events_url, arguments.events_namespace)
    relay = OutboxRelay(
        engine,
        manager,
        table,
        grace=arguments.grace,
        interval=arguments.interval,
        batch_size=arguments.batch_size,
        bus=bus,
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = arguments.interval
    try:
        while not stopping.is_set():
            try:
                relayed = relay.run_once()
            except (SQLAlchemyError, FreshcacheError, OSError) as exc:
                relay.failed_runs += 1
                if arguments.once:
                    log.error("relay pass failed: %s", reason_of(exc))
                    return 1
                delay = retry_delay(delay)
                log.warning("relay pass failed: %s; retrying in %.1f s", reason_of(exc), delay)
                stopping.wait(delay)
                continue
            delay = arguments.interval
            stats = relay.last_stats
            print(
                f"relayed {relayed} rows; {stats['outbox_pending']} pending, "
                f"oldest {stats['relay_lag_seconds']:.1f} s",
                flush=True,
            )
            if arguments.once:
                return 0
            stopping.wait(arguments.interval)
        return 0
    finally:
        if bus is not None:
            bus.close()
        manager.close()
        cache.close()
        engine.dispose()


def _events_bus(url: str | None, namespace: str) -> Any:
    """A bus publishing to the Redis stream at ``url``; without one, rows carrying events wait."""
    if not url:
        return None
    from freshcache import EventBus
    from freshcache._sync.events.transports.redis_streams import RedisStreamsTransport

    return EventBus(RedisStreamsTransport.from_url(url, service="relay", namespace=namespace))


def _engine(url: str, table: Any) -> Any:
    """An engine on ``url`` that answered, with the outbox table there; else one clear error."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    from freshcache.integrations.sqlalchemy._errors import reason_of
    from freshcache.integrations.sqlalchemy._outbox import require_outbox

    try:
        engine = create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise ConfigurationError(f"--database-url names an unknown database: {exc}") from None
    except ArgumentError:
        raise ConfigurationError(
            "--database-url is not a SQLAlchemy URL (dialect+driver://user:password@host:port/database)"
        ) from None
    except ImportError as exc:
        raise ConfigurationError(
            f"--database-url needs a driver that is not installed: {exc}"
        ) from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            require_outbox(connection, table)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise Unreachable(f"cannot reach the database at {shown}: {reason_of(exc)}") from None
    except ConfigurationError:
        engine.dispose()
        raise
    return engine
