"""``freshcache serve``: the reference service under uvicorn, configured by its Settings
(environment variables ``FRESHCACHE_*``, listed by ``--help``).

The app is built in each worker by :func:`app_from_env` from the environment, so that
``--workers N`` (uvicorn's processes, which import the app by name) and one process run
the same code; ``--no-seed`` reaches the workers as ``FRESHCACHE_SEED=false``. An empty
database is seeded here first, with progress bars, before any worker starts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import typer
import typer.core

from freshcache._exceptions import ConfigurationError

FACTORY = "freshcache.cli.serve:app_from_env"


def app_from_env() -> Any:
    """The service's app on the settings of the environment (uvicorn's factory)."""
    from freshcache.app import create_app  # type: ignore[import-not-found, unused-ignore]
    from freshcache.app.settings import Settings  # type: ignore[import-not-found, unused-ignore]

    return create_app(Settings())


def settings_help() -> str:
    """Each setting with its environment variable and description; a line if the app is missing."""
    try:
        from freshcache.app.settings import Settings  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        return f"Settings: unavailable, the service is not installed ({exc})."
    prefix = str(Settings.model_config.get("env_prefix", "FRESHCACHE_"))
    lines = ["Settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  {(prefix + name).upper()}: {field.description or ''}")
    return "\n\n".join(lines)


class _ServeCommand(typer.core.TyperCommand):
    """Lists the settings in its help, read when the help is asked for (the app is heavy)."""

    def get_help(self, ctx: Any) -> str:
        self.epilog = settings_help()
        return super().get_help(ctx)


def is_memory(cache_url: Any) -> bool:
    """Whether ``cache_url`` names the in-process memory cache (also its default: no URL)."""
    return not cache_url or str(cache_url).strip().lower().startswith("memory:")


def register(app: typer.Typer) -> None:
    @app.command(
        "serve",
        cls=_ServeCommand,
        help="Run the reference service: the API, the monitoring API and the dashboard.",
    )
    def serve(
        host: str = typer.Option("127.0.0.1", help="The address to listen on."),
        port: int = typer.Option(8000, min=0, max=65535, help="The port to listen on."),
        workers: int = typer.Option(1, min=1, help="Processes (more than one needs Redis)."),
        seed: bool = typer.Option(
            True, "--seed/--no-seed", help="Seed a small data set on first run."
        ),
        access_log: bool = typer.Option(
            True, "--access-log/--no-access-log", help="Log every request (uvicorn's access log)."
        ),
    ) -> None:
        try:
            import uvicorn

            from freshcache.app.settings import Settings  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise ConfigurationError(
                f"serve needs the service and its server, pip install 'freshcache[fastapi,cli]' ({exc})"
            ) from None
        if not seed:
            os.environ["FRESHCACHE_SEED"] = "false"
        try:
            settings = Settings()
        except ValueError as exc:  # pydantic's ValidationError: a bad FRESHCACHE_* variable
            raise ConfigurationError(" ".join(str(exc).split())) from None
        if workers > 1 and is_memory(getattr(settings, "cache_url", None)):
            raise ConfigurationError(
                f"--workers {workers} on the memory cache would serve stale data across "
                "processes: set FRESHCACHE_CACHE_URL=redis://... to share one cache"
            )
        if settings.seed:  # the first run's data set, with progress bars, before any worker starts
            from freshcache.app.seed import Sizes  # type: ignore[import-not-found, unused-ignore]
            from freshcache.cli.seed import load, progress_bars

            with progress_bars() as on_progress:
                asyncio.run(load(settings, Sizes(), only_if_empty=True, on_progress=on_progress))
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        typer.echo(f"API docs:  http://{shown}:{port}/docs")
        typer.echo(f"Dashboard: http://{shown}:{port}/dashboard")
        uvicorn.run(
            FACTORY, factory=True, host=host, port=port, workers=workers, access_log=access_log
        )
