"""``freshcache verify``: drive running services (or ones it starts) with writers and
readers on every cached route, optionally under faults, and check what was read.

The engine is :mod:`freshcache.verification`; this module reads the options, starts what
``--spawn`` asks for, shows progress and prints the report. Exit status 1 when a read
broke a rule (or nothing could be checked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from freshcache._exceptions import ConfigurationError
from freshcache.cli._service import base_url
from freshcache.cli.serve import is_memory
from freshcache.verification.faults import Faults
from freshcache.verification.history import KINDS, Verdict, check_history
from freshcache.verification.processes import Children
from freshcache.verification.workload import History, Plan, Run

SETTLE_SECONDS = 1.0
LOG_EVERY = 15.0


def register(app: typer.Typer) -> None:
    @app.command(
        "verify",
        help="Check a running service's reads against its writes, per key, optionally under faults.",
    )
    def verify(
        url: Annotated[
            list[str] | None,
            typer.Option(help="A service, http://host:port (repeat for several)."),
        ] = None,
        spawn: int = typer.Option(
            0, min=0, max=64, help="Start N service processes of its own (freshcache serve)."
        ),
        database_url: str | None = typer.Option(
            None, help="With --spawn: their database (default: a SQLite file of the run)."
        ),
        cache_url: str | None = typer.Option(
            None, help="With --spawn: their cache (default: a redis-server of the run's own)."
        ),
        consistency: str | None = typer.Option(
            None, help="With --spawn: FRESHCACHE_CONSISTENCY of the services (strict, commit)."
        ),
        faults: bool = typer.Option(
            False, "--faults", help="Restart and pause Redis, kill services, delay fills."
        ),
        fault_interval: float = typer.Option(3.0, help="Mean SECONDS between two faults."),
        fill_delay: float = typer.Option(
            0.02, help="With --faults and --spawn: FRESHCACHE_TEST_FILL_DELAY, in seconds."
        ),
        redis_restart_cmd: str | None = typer.Option(
            None, help="A shell command restarting the services' Redis (a fault)."
        ),
        redis_pid: int | None = typer.Option(
            None, help="The pid of the services' Redis, to pause it (a fault)."
        ),
        restart_cmd: str | None = typer.Option(
            None, help="A shell command killing and restarting a service (a fault)."
        ),
        duration: float = typer.Option(30.0, help="Stop after SECONDS."),
        operations: int = typer.Option(100_000, min=1, help="Stop after this many requests."),
        readers: int = typer.Option(32, min=1, max=1000, help="Concurrent readers."),
        keys: int = typer.Option(2, min=1, max=30, help="Registers of each kind (writers)."),
        timeout: float = typer.Option(5.0, help="SECONDS before a request counts as failed."),
        seed: int = typer.Option(0, help="Seed of the random choices."),
        report: Annotated[
            Path | None, typer.Option("--json", help="Also write the report here, as JSON.")
        ] = None,
    ) -> None:
        urls = [base_url(u) for u in url or []]
        if not urls and not spawn:
            raise ConfigurationError(
                "give the services to check (--url) or a number to start (--spawn)"
            )
        for name, value in (("--duration", duration), ("--timeout", timeout),
                            ("--fault-interval", fault_interval)):  # fmt: skip
            if not value > 0:
                raise ConfigurationError(
                    f"{name} must be a positive number of seconds, got {value}"
                )
        if not 0 <= fill_delay <= 10:
            raise ConfigurationError(
                f"--fill-delay must be between 0 and 10 seconds, got {fill_delay}"
            )
        if not spawn and (database_url or cache_url or consistency):
            raise ConfigurationError("--database-url, --cache-url and --consistency need --spawn")
        if consistency not in (None, "strict", "commit"):
            raise ConfigurationError(f"--consistency must be strict or commit, got {consistency!r}")
        if spawn > 1 and cache_url is not None and is_memory(cache_url):
            raise ConfigurationError(
                f"--spawn {spawn} on the memory cache would serve stale data across processes: "
                "leave --cache-url out (a redis-server of the run's own) or name a Redis"
            )
        if faults and not (spawn or redis_restart_cmd or redis_pid or restart_cmd):
            raise ConfigurationError(
                "--faults needs something to fault: --spawn, --redis-restart-cmd, "
                "--redis-pid or --restart-cmd"
            )
        if redis_pid is not None and redis_pid <= 0:
            raise ConfigurationError(f"--redis-pid must be a process id, got {redis_pid}")
        plan = Plan(urls, readers, keys, duration, operations, timeout, seed)
        spawning = Spawn(spawn, database_url, cache_url, consistency or "strict", fill_delay)
        injector = Faults(
            redis_restart_cmd=redis_restart_cmd,
            redis_pid=redis_pid,
            restart_cmd=restart_cmd,
            interval=fault_interval,
            seed=seed,
        )
        for chatty in ("httpx", "httpx2"):  # a line per request would drown the progress
            logging.getLogger(chatty).setLevel(logging.WARNING)
        console = Console()
        history, verdict, setup = asyncio.run(
            _verify(plan, spawning, injector if faults else None, console)
        )
        shown = summary(history, verdict, setup, injector if faults else None)
        for table in tables(shown, verdict):
            console.print(table)
        if report is not None:
            report.write_text(json.dumps(shown, indent=2) + "\n")
        if verdict.reads == 0:
            console.print("[red]no read was answered: nothing was checked[/red]")
            raise typer.Exit(1)
        if verdict.violations:
            console.print(f"[red]{verdict.violations} reads broke a rule[/red]")
            raise typer.Exit(1)
        console.print(f"[green]no violation in {verdict.reads} reads[/green]")


class Spawn:
    """What ``--spawn`` starts: ``count`` services on one database and one cache."""

    def __init__(
        self,
        count: int,
        database_url: str | None,
        cache_url: str | None,
        consistency: str,
        fill_delay: float,
    ) -> None:
        self.count = count
        self.database_url = database_url
        self.cache_url = cache_url
        self.consistency = consistency
        self.fill_delay = fill_delay

    async def start(self, children: Children, faults: bool) -> list[str]:
        cache_url = self.cache_url
        if cache_url is None:
            cache_url = (await children.start_redis()).url
        database = self.database_url or f"sqlite+aiosqlite:///{children.directory / 'verify.db'}"
        settings = {
            "FRESHCACHE_DATABASE_URL": database,
            "FRESHCACHE_CACHE_URL": cache_url,
            "FRESHCACHE_CONSISTENCY": self.consistency,
            "FRESHCACHE_DATA_DIR": str(children.directory),
            "FRESHCACHE_SEED": "false",
            "FRESHCACHE_ENV": "test",
        }
        if faults and self.fill_delay > 0:
            settings["FRESHCACHE_TEST_FILL_DELAY"] = str(self.fill_delay)
        services = await children.start_services(self.count, settings)
        return [service.url for service in services]


async def _verify(
    plan: Plan, spawn: Spawn, faults: Faults | None, console: Console
) -> tuple[History, Verdict, dict[str, Any]]:
    children = Children() if spawn.count else None
    setup: dict[str, Any] = {"load_average": _load()}
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for stop in (signal.SIGINT, signal.SIGTERM):  # while starting: stop what was started
        loop.add_signal_handler(stop, main.cancel)
    try:
        if children is not None:
            plan.urls = [*plan.urls, *await spawn.start(children, faults is not None)]
            setup["spawned"] = spawn.count
            setup["consistency"] = spawn.consistency
            setup["database"] = (
                "sqlite" if spawn.database_url is None else spawn.database_url.split(":")[0]
            )
            setup["cache"] = (
                "redis-server of the run"
                if spawn.cache_url is None
                else spawn.cache_url.split(":")[0]
            )
        run = Run(plan)
        for stop in (signal.SIGINT, signal.SIGTERM):  # once running: report what was done
            loop.add_signal_handler(stop, run.stopped.set)
        await run.setup()
        fault_task = None
        run.history.began_ns = time.monotonic_ns()  # the run's origin, the faults' too
        if faults is not None:
            faults.children = children
            fault_task = asyncio.create_task(faults.run(run.stopped, run.history.began_ns / 1e9))
        with _progress(console) as progress:
            shown = asyncio.create_task(_show(progress, run, console))
            try:
                await run.drive()
            finally:
                run.stopped.set()
                await shown
                if fault_task is not None:
                    await fault_task
        await asyncio.sleep(SETTLE_SECONDS)  # a service restarted by the last fault comes back
        await run.settle()
        await run.teardown()
        setup["load_average_after"] = _load()
        return run.history, check_history(run.history.writes, run.history.reads), setup
    finally:
        if children is not None:
            children.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )


async def _show(progress: Progress, run: Run, console: Console) -> None:
    """The bar on a terminal; elsewhere (a log file) a line every ``LOG_EVERY`` seconds."""
    task = progress.add_task("verify", total=run.plan.operations, status="")
    began = logged = time.monotonic()
    while True:
        tally = run.history.tally
        now = time.monotonic()
        failed = tally.failed_reads + tally.unknown_writes + tally.unsent_writes
        status = f"{tally.operations / max(now - began, 1e-9):,.0f} ops/s, {failed} failed"
        progress.update(task, completed=tally.operations, status=status)
        if not console.is_terminal and now - logged >= LOG_EVERY:
            logged = now
            console.print(
                f"verify: {tally.operations:,} operations in {now - began:.0f} s, {status}"
            )
        if run.stopped.is_set():
            return
        await asyncio.sleep(0.25)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(
    history: History, verdict: Verdict, setup: dict[str, Any], faults: Faults | None
) -> dict[str, Any]:
    """The report as data: what ran, what was seen, what broke (also ``--json``)."""
    tally = history.tally
    seconds = max(history.seconds, 1e-9)
    return {
        **setup,
        "seconds": round(history.seconds, 1),
        "operations": tally.operations,
        "operations_per_second": round(tally.operations / seconds, 1),
        "reads": tally.reads,
        "failed_reads": tally.failed_reads,
        "reads_by_route": dict(sorted(tally.routes.items())),
        "values_checked": verdict.reads,
        "writes": tally.writes,
        "unknown_writes": tally.unknown_writes,
        "unsent_writes": tally.unsent_writes,
        "keys": history.keys,
        "faults": faults.log.counts() if faults else {},
        "fault_errors": faults.log.errors[:5] if faults else [],
        "errors": dict(tally.errors.most_common(8)),
        "violations": verdict.counts,
        "violation_rate": verdict.violations / verdict.reads if verdict.reads else 0.0,
        "examples": verdict.examples,
        # When each violation and each fault happened, in seconds since the run began.
        "timeline": {
            "faults": [[round(at, 3), name] for at, name in faults.log.injected] if faults else [],
            "violations": [
                [
                    round((start - history.began_ns) / 1e9, 3),
                    round((end - history.began_ns) / 1e9, 3),
                    kind,
                    example,
                ]
                for kind, start, end, example in sorted(verdict.found, key=lambda v: v[1])
            ],
        },
    }


def tables(shown: dict[str, Any], verdict: Verdict) -> list[Table]:
    """The summary, the reads by route, and the violations with examples."""
    run = Table(title="freshcache verify", title_justify="left")
    run.add_column("")
    run.add_column("", justify="right")
    rows = [
        ("operations", f"{shown['operations']:,} in {shown['seconds']} s"),
        ("throughput", f"{shown['operations_per_second']:,} ops/s"),
        ("reads answered / failed", f"{shown['reads']:,} / {shown['failed_reads']:,}"),
        ("values checked", f"{shown['values_checked']:,} on {shown['keys']} keys"),
        ("writes answered / unknown / not sent",
         f"{shown['writes']:,} / {shown['unknown_writes']:,} / {shown['unsent_writes']:,}"),
        ("faults", ", ".join(f"{k} x{v}" for k, v in shown["faults"].items()) or "none"),
        ("machine load (1, 5, 15 min)", " ".join(map(str, shown["load_average"]))),
    ]  # fmt: skip
    if "consistency" in shown:
        rows.insert(0, ("services started", f"{shown['spawned']}, {shown['consistency']} mode"))
    for name, value in rows:
        run.add_row(name, value)
    routes = Table(title="reads by route", title_justify="left")
    routes.add_column("route")
    routes.add_column("answered", justify="right")
    for route, count in shown["reads_by_route"].items():
        routes.add_row(route, f"{count:,}")
    violations = Table(title="violations", title_justify="left")
    violations.add_column("kind")
    violations.add_column("reads", justify="right")
    violations.add_column("examples")
    for kind in KINDS:
        violations.add_row(
            kind, f"{verdict.counts[kind]:,}", "\n".join(verdict.examples[kind][:3]) or "-"
        )
    return [run, routes, violations]
