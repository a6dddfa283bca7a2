"""The Typer app: every command's module registers itself here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer

from freshcache.cli import bench, invalidate, relay, rules, seed, serve, stats, verify

COMMANDS = (serve, seed, stats, invalidate, rules, relay, verify, bench)


def _version() -> str:
    try:
        return version("freshcache")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"freshcache {_version()}")
        raise typer.Exit(0)


def app() -> typer.Typer:
    top = typer.Typer(
        name="freshcache",
        help="Cache invalidation that is correct by construction: the service, its cache, its outbox.",
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @top.callback()
    def options(
        show_version: bool = typer.Option(
            False,
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print freshcache's version and exit.",
        ),
    ) -> None:
        pass

    for module in COMMANDS:
        module.register(top)
    return top


def command() -> Any:
    """The click command of the app (typer's own click), to run with ``standalone_mode=False``."""
    return typer.main.get_command(app())
