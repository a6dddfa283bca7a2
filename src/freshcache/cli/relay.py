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
import signal
import threading
from types import FrameType
from typing import Any

import typer

from freshcache._exceptions import ConfigurationError, FreshcacheError
from freshcache.cli._failures import Unreachable

log = logging.getLogger("freshcache")


def register(app: typer.Typer) -> None:
    """The ``relay`` command and its options, on ``app``."""

    @app.command("relay", help="Apply and delete the outbox rows that writers left behind.")
    def relay(
        database_url: str = typer.Option(
            ...,
            envvar="FRESHCACHE_DATABASE_URL",
            help="SQLAlchemy URL of the database holding the outbox.",
        ),
        cache_url: str = typer.Option(
            ...,
            envvar="FRESHCACHE_CACHE_URL",
            help="redis://host:port/db?namespace=... of the cache.",
        ),
        table: str = typer.Option("freshcache_outbox", help="The outbox table's name."),
        events_url: str | None = typer.Option(
            None,
            envvar="FRESHCACHE_EVENTS_URL",
            help="redis://... of the event stream to publish the rows' events to; "
            "without it, rows carrying events are left pending.",
        ),
        events_namespace: str = typer.Option("fc", help="The event stream's namespace."),
        grace: float = typer.Option(5.0, help="Seconds a row is left to its writer."),
        interval: float = typer.Option(1.0, help="Seconds between passes."),
        batch_size: int = typer.Option(1000, help="Rows claimed per transaction."),
        once: bool = typer.Option(False, "--once", help="One pass, then exit."),
    ) -> None:
        code = run(argparse.Namespace(**locals()))
        if code:
            raise typer.Exit(code)


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
    from freshcache import EventBus, RedisStreamsTransport

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
