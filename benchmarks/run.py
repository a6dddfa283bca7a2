"""Run the benchmarks: ``uv run python -m benchmarks.run [--suite redis|memory|tags|...] [--quick]``.

Every suite prints Markdown tables (median per operation, ratio to the reference, goal,
met or not); the run writes ``latest.json`` and ``latest.png`` into ``--output``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    entity_invalidation,
    memory_hit,
    outbox_events,
    redis_hit,
    sqlalchemy_writes,
    tag_invalidation,
)
from benchmarks.report import load_average, machine_info, summary, write_chart, write_json
from benchmarks.settings import Settings
from benchmarks.tables import Table

SUITES: dict[str, Callable[[Settings], list[Table]]] = {
    "redis": redis_hit.run,
    "memory": memory_hit.run,
    "tags": tag_invalidation.run,
    "manager": entity_invalidation.run,
    "sqlalchemy": sqlalchemy_writes.run,
    "outbox_events": outbox_events.run,
}
NEEDS_REDIS = {"redis", "tags", "manager", "sqlalchemy", "outbox_events"}
NEEDS_DATABASE = {"sqlalchemy", "outbox_events"}
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--suite",
        action="append",
        choices=list(SUITES),
        help="run this suite (repeat for several); all of them by default",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: proves the suites run, measures little"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the hit benchmarks")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("FRESHCACHE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis to measure against (default: $FRESHCACHE_BENCH_REDIS_URL or local db 0)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FRESHCACHE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="the PostgreSQL of the sqlalchemy suite, which works in a schema of its own "
        "(default: $FRESHCACHE_BENCH_DATABASE_URL or local database test)",
    )
    parser.add_argument(
        "--namespace",
        default="bench",
        help="prefix of every key the run writes; they are all deleted afterwards",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where latest.json and latest.png go "
        "(default: benchmarks/results, or benchmarks/results/quick.tmp with --quick)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Table]:
    args = parse_args(argv)
    settings = Settings.for_run(
        quick=args.quick,
        rounds=args.rounds,
        redis_url=args.redis_url,
        database_url=args.database_url,
        namespace=args.namespace,
    )
    suites = list(dict.fromkeys(args.suite or SUITES))
    output = args.output or (RESULTS / "quick.tmp" if args.quick else RESULTS)
    uses_redis = bool(NEEDS_REDIS.intersection(suites))
    uses_database = bool(NEEDS_DATABASE.intersection(suites))
    machine = machine_info(
        settings.redis_url if uses_redis else None,
        settings.database_url if uses_database else None,
    )
    print(
        f"# freshcache benchmarks{' (quick: the numbers mean little)' if settings.quick else ''}\n\n"
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, Redis server "
        f"{machine['redis_server'] or '-'}, PostgreSQL {machine['postgres_server'] or '-'}, "
        f"{machine['timestamp']}, load average {_load(machine['load_average'])}; "
        "medians over rounds.\n",
        flush=True,
    )
    tables: list[Table] = []
    try:
        for suite in suites:
            for table in SUITES[suite](settings):
                print(table.to_markdown() + "\n", flush=True)
                tables.append(table)
    finally:
        if uses_redis:
            sweep(settings)
    outcome = summary(tables)
    print(f"Load average at the end: {_load(load_average())}.")
    print(f"Goals met: {len(outcome['met'])}; missed: {len(outcome['missed'])}.")
    for goal in outcome["missed"]:
        print(f"- missed: {goal}")
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "latest.json", tables, settings, machine)
    write_chart(output / "latest.png", tables, machine)
    print(f"\nWrote {output / 'latest.json'} and {output / 'latest.png'}.")
    return tables


def _load(averages: list[float] | None) -> str:
    return "-" if averages is None else " ".join(f"{value:.2f}" for value in averages)


def sweep(settings: Settings) -> None:
    """Delete whatever the run left under its namespace, even after a failure."""
    import redis

    patterns = [
        f"{settings.namespace}:*",  # raw, cashews and aiocache keys
        f"{{{settings.namespace}}}:*",  # freshcache's keys
        f"_tag:{settings.namespace}:*",  # cashews' tag sets
    ]
    with redis.Redis.from_url(settings.redis_url) as client:
        for pattern in patterns:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                client.unlink(*batch[start : start + 1000])


if __name__ == "__main__":
    main()
