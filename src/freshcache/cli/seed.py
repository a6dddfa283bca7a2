"""``freshcache seed``: a generated data set written into the service's database, with progress bars.

It runs the service's own parts (repositories, hooks, outbox) on the service's settings,
so a service running on the same database and cache keeps reading fresh data while it
loads. ``serve`` seeds its first run through :func:`load` too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from freshcache._exceptions import ConfigurationError
from freshcache.cli._failures import Unreachable


@contextmanager
def progress_bars(console: Console | None = None) -> Iterator[Any]:
    """A Rich progress display and the ``on_progress(table, done, total)`` that moves its bars."""
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True)) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(table, total=total, rate="")
            task = tasks[table]
            elapsed = progress.tasks[tasks[table]].elapsed or 0.0
            rate = f"{done / elapsed:,.0f} rows/s" if done and elapsed > 0 else ""
            progress.update(task, completed=done, rate=rate)

        yield on_progress


def settings_for(database_url: str | None, cache_url: str | None) -> Any:
    """The service's settings from the environment, with the options given on top."""
    try:
        from freshcache.app.settings import Settings  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ConfigurationError(
            f"seed needs the service, pip install 'freshcache[fastapi,cli]' ({exc})"
        ) from None
    given: dict[str, Any] = {
        name: value
        for name, value in (("database_url", database_url), ("cache_url", cache_url))
        if value is not None
    }
    try:
        return Settings(**given)
    except ValueError as exc:  # pydantic's ValidationError: a bad FRESHCACHE_* variable
        raise ConfigurationError(" ".join(str(exc).split())) from None


async def load(
    settings: Any,
    sizes: Any,
    *,
    existing: str = "refuse",
    on_progress: Any = None,
    only_if_empty: bool = False,
    random_seed: int = 7,
) -> dict[str, int]:
    """Create the schema and write ``sizes`` rows; what the tables held before, by table.

    ``existing`` says what to do with a database that already holds rows: ``refuse``
    (a ConfigurationError saying how to go on), ``append`` or ``reset``. With
    ``only_if_empty`` a database with rows is left as it is (serve's first run).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from freshcache.app import create_schema, stop
    from freshcache.app import seed as seeding
    from freshcache.integrations.sqlalchemy._errors import reason_of

    service = built(settings)
    shown = service.engine.url.render_as_string(hide_password=True)
    try:
        await create_schema(service)
        before = await seeding.counts(service.users)
        held = sum(before.values())
        if held and only_if_empty:
            return before
        if held and existing == "refuse":
            raise ConfigurationError(
                f"the database at {shown} already holds "
                + ", ".join(f"{count} {table}" for table, count in before.items())
                + ": pass --append to add beside them, or --reset to delete them first"
            )
        service.relay.start()
        if held and existing == "reset":
            await seeding.reset(service.users)
        await seeding.seed(service.users, sizes, on_progress=on_progress, random_seed=random_seed)
        return before
    except (SQLAlchemyError, OSError) as exc:
        raise Unreachable(f"cannot load the database at {shown}: {reason_of(exc)}") from None
    finally:
        await stop(service)


def built(settings: Any) -> Any:
    """The service's parts on ``settings``; a database URL it cannot use is one clear error."""
    from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError

    from freshcache.app.service import build

    try:
        return build(settings)
    except (ArgumentError, NoSuchModuleError, InvalidRequestError, ImportError) as exc:
        raise ConfigurationError(
            f"the database URL {settings.database_url!r} cannot be used: {exc} "
            "(expected an async driver, e.g. postgresql+psycopg://host/db or sqlite+aiosqlite:///file.db)"
        ) from None


def register(app: typer.Typer) -> None:
    @app.command(
        "seed",
        help="Generate a data set (users, their challenges, evaluations) in the service's "
        "database, in bulk, with progress bars. The database and cache come from the "
        "FRESHCACHE_* settings unless given; a database holding rows is refused without "
        "--append or --reset.",
    )
    def seed(
        users: int = typer.Option(20, min=0, help="Users to generate."),
        challenges: int = typer.Option(60, min=0, help="Challenges, each of a random new user."),
        evaluations: int = typer.Option(
            120, min=0, help="Evaluations, each of a random new challenge."
        ),
        database_url: str | None = typer.Option(
            None,
            help="SQLAlchemy URL with an async driver (default: FRESHCACHE_DATABASE_URL, or "
            "the SQLite file of serve).",
        ),
        cache_url: str | None = typer.Option(
            None,
            help="The cache a running service reads, invalidated as rows go in "
            "(default: FRESHCACHE_CACHE_URL).",
        ),
        append: bool = typer.Option(False, "--append", help="Add beside the rows there."),
        reset: bool = typer.Option(
            False, "--reset", help="Delete every user, challenge and evaluation first."
        ),
        random_seed: int = typer.Option(7, help="Seed of the generator: same seed, same data."),
    ) -> None:
        from freshcache.app.seed import Sizes  # type: ignore[import-not-found, unused-ignore]

        if append and reset:
            raise ConfigurationError("--append and --reset cannot be combined: choose one")
        try:
            sizes = Sizes(users, challenges, evaluations)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        settings = settings_for(database_url, cache_url)
        existing = "append" if append else "reset" if reset else "refuse"
        with progress_bars() as on_progress:
            asyncio.run(
                load(
                    settings,
                    sizes,
                    existing=existing,
                    on_progress=on_progress,
                    random_seed=random_seed,
                )
            )
        typer.echo(
            f"seeded {sizes.users} users, {sizes.challenges} challenges and "
            f"{sizes.evaluations} evaluations"
        )
