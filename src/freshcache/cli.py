"""The ``freshcache`` command.

``freshcache relay``: apply the outbox rows that writers left behind (a crash, a cache
outage) and delete them; run it beside the application, as many times as you like on
PostgreSQL (relays share the rows with FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from freshcache._exceptions import FreshcacheError

log = logging.getLogger("freshcache")


def _relay(arguments: argparse.Namespace) -> int:
    from sqlalchemy import MetaData, create_engine

    from freshcache import Cache, InvalidationManager
    from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table

    engine = create_engine(arguments.database_url)
    cache = Cache.from_url(arguments.cache_url)
    manager = InvalidationManager(cache)
    relay = OutboxRelay(
        engine,
        manager,
        outbox_table(MetaData(), arguments.table),
        grace=arguments.grace,
        interval=arguments.interval,
        batch_size=arguments.batch_size,
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            relayed = relay.run_once()
            stats = relay.stats()
            print(
                f"relayed {relayed} rows; {stats['outbox_pending']} pending, "
                f"oldest {stats['relay_lag_seconds']:.1f} s",
                flush=True,
            )
            if arguments.once or stopping.wait(arguments.interval):
                return 0
    finally:
        manager.close()
        cache.close()
        engine.dispose()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="freshcache", description=__doc__.split("\n")[0] if __doc__ else None
    )
    commands = top.add_subparsers(dest="command", required=True)
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
        "--grace", type=float, default=5.0, help="seconds a row is left to its writer"
    )
    relay.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    relay.add_argument("--batch-size", type=int, default=1000, help="rows claimed per transaction")
    relay.add_argument("--once", action="store_true", help="one pass, then exit")
    relay.set_defaults(run=_relay)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        code: int = arguments.run(arguments)
    except FreshcacheError as exc:
        print(f"freshcache: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
