"""Run the benchmarks: ``freshcache bench`` (or ``python -m benchmarks.run``) ``[--suite ...] [--quick]``.

Every suite prints Markdown tables (median per operation, ratio to the reference, the
client's instructions per operation and their ratio, goal, met or not); the run then
counts instructions under callgrind (unless ``--no-callgrind``) and writes
``benchmarks.json``, ``benchmarks.png`` and ``benchmarks.md`` into ``--output``: by
default ``docs/`` for a full run of every suite, ``benchmarks/results/`` for a run of
some, ``benchmarks/results/quick.tmp/`` for a quick one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    document,
    entity_invalidation,
    instructions,
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
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
TEMPLATE = DOCS / "benchmarks.md"
NAME = "benchmarks"  # benchmarks.json, benchmarks.png and benchmarks.md in --output


class ServerDown(RuntimeError):
    """A server a suite needs did not answer before the run began."""


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
        "--no-callgrind",
        action="store_true",
        help="wall time only: skip the instruction counts (valgrind's callgrind)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="counting runs per suite under callgrind, to show they repeat (default 2)",
    )
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
        help="where benchmarks.json, .png and .md go (default: docs/ for a full run of every "
        "suite, benchmarks/results/ for some, benchmarks/results/quick.tmp/ with --quick)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def default_output(suites: Sequence[str], quick: bool) -> Path:
    if quick:
        return RESULTS / "quick.tmp"
    return DOCS if set(suites) == set(SUITES) else RESULTS


def main(argv: Sequence[str] | None = None) -> list[Table]:
    args = parse_args(argv)
    started = time.monotonic()
    settings = Settings.for_run(
        quick=args.quick,
        rounds=args.rounds,
        redis_url=args.redis_url,
        database_url=args.database_url,
        namespace=args.namespace,
    )
    suites = list(dict.fromkeys(args.suite or SUITES))
    output = args.output or default_output(suites, settings.quick)
    uses_redis = bool(NEEDS_REDIS.intersection(suites))
    uses_database = bool(NEEDS_DATABASE.intersection(suites))
    machine = machine_info(
        settings.redis_url if uses_redis else None,
        settings.database_url if uses_database else None,
    )
    if uses_redis and machine["redis_server"] is None:
        raise ServerDown(f"Redis at {settings.redis_url} did not answer (--redis-url)")
    if uses_database and machine["postgres_server"] is None:
        raise ServerDown(f"PostgreSQL at {settings.database_url} did not answer (--database-url)")
    print(
        f"# freshcache benchmarks{' (quick: the numbers mean little)' if settings.quick else ''}\n\n"
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, Redis server "
        f"{machine['redis_server'] or '-'}, PostgreSQL {machine['postgres_server'] or '-'}, "
        f"{machine['timestamp']}, load average {_load(machine['load_average'])}; "
        "medians over rounds.\n",
        flush=True,
    )
    tables: list[Table] = []
    counting: dict[str, Any] | None = None
    skipped = "--no-callgrind"
    try:
        for suite in suites:
            tables.extend(SUITES[suite](settings))
            print(f"(wall time measured: {suite})", flush=True)
        if args.quick:
            # Under callgrind even tiny counts take minutes (imports run 50 times slower);
            # tests/test_benchmarks.py proves the counting on a loop of its own instead.
            skipped = "--quick (the counting's own test is in tests/test_benchmarks.py)"
        elif not args.no_callgrind:
            counting, skipped = _count(suites, settings, tables, args.repeats or 2)
    finally:
        if uses_redis:
            sweep(settings)
    for table in tables:
        print(table.to_markdown() + "\n", flush=True)
    outcome = summary(tables)
    machine["load_average_at_end"] = load_average()
    print(f"Load average at the end: {_load(machine['load_average_at_end'])}.")
    print(f"Goals met: {len(outcome['met'])}; missed: {len(outcome['missed'])}.")
    for goal in outcome["missed"]:
        print(f"- missed: {goal}")
    output.mkdir(parents=True, exist_ok=True)
    panels = write_chart(output / f"{NAME}.png", tables, machine)
    results = {
        "command": _command(argv),
        "quick": settings.quick,
        "suites": suites,
        "duration_seconds": time.monotonic() - started,
        "json_name": f"{NAME}.json",
        "chart": {"file": f"{NAME}.png", "figures": 1, "panels": panels},
        "instructions": counting,
        "instructions_skipped": None if counting else skipped,
    }
    saved = write_json(output / f"{NAME}.json", tables, settings, machine, results)
    page = document.render(
        TEMPLATE.read_text(),
        tables=tables,
        suites=suites,
        all_suites=list(SUITES),
        document=saved,
        chart=f"{NAME}.png",
    )
    (output / f"{NAME}.md").write_text(page)
    print(f"\nWrote {NAME}.json, {NAME}.png and {NAME}.md into {output}.")
    return tables


def _command(argv: Sequence[str] | None) -> str:
    given = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["freshcache bench", *given])


def _count(
    suites: Sequence[str], settings: Settings, tables: Sequence[Table], repeats: int
) -> tuple[dict[str, Any] | None, str]:
    """Instruction counts into the tables' rows; or None and why they were not measured."""
    version = instructions.valgrind_version()
    if version is None:
        print("valgrind is not installed: instruction counts skipped, wall time only.")
        return None, "valgrind is not installed"
    try:
        counts = instructions.count(suites, settings, repeats=repeats)
    except instructions.CountingError as exc:
        print(f"Instruction counts failed, wall time only: {exc}")
        return None, f"counting failed: {str(exc).splitlines()[0]}"
    for table in tables:
        for row in table.rows:
            row.instructions = counts.per_row.get((table.title, row.contestant))
    print(f"Instruction counts repeat within {counts.spread():.2%} (largest difference).")
    return {**counts.to_json(), "repeats": repeats}, ""


def _load(averages: list[float] | None) -> str:
    return "-" if averages is None else " ".join(f"{value:.2f}" for value in averages)


def sweep(settings: Settings) -> None:
    """Delete whatever the run left under its namespace, even after a failure."""
    import redis

    patterns = [
        pattern
        # The run's namespace, and the counting runs' (see benchmarks.instructions).
        for namespace in (settings.namespace, f"{settings.namespace}-c*")
        for pattern in (
            f"{namespace}:*",  # raw, cashews and aiocache keys
            f"{{{namespace}}}:*",  # freshcache's keys
            f"_tag:{namespace}:*",  # cashews' tag sets
        )
    ]
    with redis.Redis.from_url(settings.redis_url) as client:
        for pattern in patterns:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                client.unlink(*batch[start : start + 1000])


if __name__ == "__main__":
    main()
