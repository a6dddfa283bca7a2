"""``freshcache bench``: the project's benchmarks beside the peers, in one command.

The benchmarks are not part of the installed package: they live in the repository's
``benchmarks/`` (and build on the integration tests' domain, ``tests/integrations/``),
next to the peers they compare with, which are the ``bench`` dependency group. So the
command runs from a checkout: it looks for one in the working directory and its parents,
then beside the installed sources (an editable install), and stops with one line when
there is none.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from freshcache._exceptions import ConfigurationError
from freshcache.cli._failures import Unreachable

SUITES = ("redis", "memory", "tags", "manager", "sqlalchemy", "outbox_events")
SUITE_OPTION = typer.Option(
    None,
    "--suite",
    help=f"Run this suite; repeat for several; all by default ({', '.join(SUITES)}).",
)


def register(app: typer.Typer) -> None:
    @app.command(
        "bench",
        help="Run the benchmarks beside the peers (wall time and callgrind instruction "
        "counts) and write docs/benchmarks.md's tables, a PNG plot and the raw JSON. "
        "Runs from a freshcache source checkout.",
    )
    def bench(
        suite: list[str] | None = SUITE_OPTION,
        quick: bool = typer.Option(
            False,
            "--quick",
            help="Tiny counts, wall time only: proves the suites, the page and the plot (CI).",
        ),
        output: str | None = typer.Option(
            None,
            "--output",
            help="Where benchmarks.md, .png and .json go (default: docs/ for a full run, "
            "benchmarks/results/ for some suites, benchmarks/results/quick.tmp/ with --quick).",
        ),
        no_callgrind: bool = typer.Option(
            False, "--no-callgrind", help="Wall time only: skip the instruction counts."
        ),
        repeats: int | None = typer.Option(
            None,
            "--repeats",
            help="Counting runs per suite under callgrind, to show they agree (default 2).",
        ),
        rounds: int | None = typer.Option(
            None, "--rounds", help="Interleaved rounds of the timed benchmarks."
        ),
        redis_url: str | None = typer.Option(
            None, "--redis-url", envvar="FRESHCACHE_BENCH_REDIS_URL", help="The Redis to use."
        ),
        database_url: str | None = typer.Option(
            None,
            "--database-url",
            envvar="FRESHCACHE_BENCH_DATABASE_URL",
            help="The PostgreSQL of the sqlalchemy suites (a schema of the run's own).",
        ),
        namespace: str = typer.Option(
            "bench", "--namespace", help="Prefix of every key written; all deleted afterwards."
        ),
    ) -> None:
        suite = suite or []
        unknown = [name for name in suite if name not in SUITES]
        if unknown:
            raise ConfigurationError(
                f"--suite: no suite {unknown[0]!r}; the suites are {', '.join(SUITES)}"
            )
        if repeats is not None and repeats < 1:
            raise ConfigurationError(f"--repeats must be at least 1, got {repeats}")
        if rounds is not None and rounds < 1:
            raise ConfigurationError(f"--rounds must be at least 1, got {rounds}")
        root = checkout()
        argv = [f"--suite={name}" for name in suite]
        argv += ["--quick"] if quick else []
        argv += ["--no-callgrind"] if no_callgrind else []
        argv += [f"--namespace={namespace}"]
        argv += [] if repeats is None else [f"--repeats={repeats}"]
        argv += [] if output is None else [f"--output={Path(output).resolve()}"]
        argv += [] if rounds is None else [f"--rounds={rounds}"]
        argv += [] if redis_url is None else [f"--redis-url={redis_url}"]
        argv += [] if database_url is None else [f"--database-url={database_url}"]
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        # Imported by name: the harness is the checkout's, not the installed package's.
        run = importlib.import_module("benchmarks.run")
        try:
            run.main(argv)
        except run.ServerDown as exc:
            raise Unreachable(str(exc)) from None


# The tree the package runs from, when it is a checkout (an editable install).
INSTALLED = Path(__file__).resolve().parents[3]  # <root>/src/freshcache/cli/bench.py


def checkout(start: Path | None = None) -> Path:
    """The freshcache source checkout holding ``benchmarks/``: the working directory or a
    parent of it, or the tree the package was installed from in editable mode."""
    here = (start or Path.cwd()).resolve()
    for candidate in [here, *here.parents, INSTALLED]:
        if _is_checkout(candidate):
            return candidate
    raise ConfigurationError(
        "freshcache bench runs the project's benchmarks from a source checkout: no "
        f"benchmarks/run.py in {here} or its parents (clone the repository and run it there)"
    )


def _is_checkout(path: Path) -> bool:
    project = path / "pyproject.toml"
    return (
        (path / "benchmarks" / "run.py").is_file()
        and project.is_file()
        and 'name = "freshcache"' in project.read_text()
    )
