"""``freshcache stats``: a running service's cache metrics, as a table; ``--watch`` refreshes."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from freshcache._exceptions import ConfigurationError
from freshcache.cli._service import base_url, call

PATH = "/api/system/metrics/cache"


def register(app: typer.Typer) -> None:
    @app.command("stats", help="Show a running service's cache metrics as a table.")
    def stats(
        url: str = typer.Option(
            ..., envvar="FRESHCACHE_URL", help="The service, http://host:port."
        ),
        token: str | None = typer.Option(
            None, envvar="FRESHCACHE_ADMIN_TOKEN", help="Its admin token, if reads need one."
        ),
        watch: float | None = typer.Option(
            None, help="Refresh every SECONDS until interrupted.", metavar="SECONDS"
        ),
    ) -> None:
        if watch is not None and not watch > 0:
            raise ConfigurationError(f"--watch must be a positive number of seconds, got {watch}")
        service = base_url(url)
        console = Console()
        if watch is None:
            console.print(table(call(service, PATH, token=token), service))
            return
        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping.is_set():
            shown = table(call(service, PATH, token=token), service)
            if console.is_terminal:
                console.clear()
            console.print(shown)
            stopping.wait(watch)


def table(report: dict[str, Any], service: str) -> Table:
    """The headline figures of a metrics report, one per row."""
    cache = report.get("cache") or {}
    shown = Table(title=f"freshcache at {service}", title_justify="left")
    shown.add_column("metric")
    shown.add_column("value", justify="right")
    shown.add_row("hits", _number(cache.get("hits")))
    shown.add_row("misses", _number(cache.get("misses")))
    shown.add_row("hit rate", f"{report.get('hit_rate', 0.0):.1%}")
    by_type = report.get("invalidations_by_entity_type") or {}
    for entity_type, count in sorted(by_type.items()):
        shown.add_row(f"invalidations of {entity_type}", _number(count))
    if not by_type:
        shown.add_row("invalidations by entity type", "none")
    shown.add_row("key invalidations", _number(report.get("key_invalidations")))
    shown.add_row("pattern invalidations", _number(report.get("pattern_invalidations")))
    shown.add_row("failed invalidations", _number(report.get("failed_invalidations")))
    shown.add_row("outbox backlog", _number(report.get("outbox_backlog")))
    lag = report.get("event_lag_seconds")
    shown.add_row("event lag", "-" if lag is None else f"{lag:.3f} s")
    return shown


def _number(value: Any) -> str:
    return "-" if value is None else str(value)
