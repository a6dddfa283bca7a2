"""Client instructions per operation, counted by callgrind: the measure that repeats.

Wall time on a shared two-core machine moves by 10 % from one run to the next; the
instructions the client executes for the same loop move by a fraction of a percent. So
each suite that measures client work runs a second time, in a child process under
``valgrind --tool=callgrind``: every contestant's loop runs once with ``ops`` operations
and once with ``2 * ops``, each run closed by a profile dump (see ``timing.Marks``), and
its cost per operation is the difference of the two dumps over ``ops``. Start-up,
imports, connecting and the loop's own set-up cost the same in both runs and cancel.

Only the client process is counted: Redis and PostgreSQL run outside valgrind, and
time spent waiting for them executes no instruction. A ratio of instructions therefore
judges the client's work, the wall ratio everything together. The ``tags`` suite is not
counted: its goals are about the server's work (one script call whatever the number of
dependents, against cashews' deletes key by key), and refilling 100,000 entries under
callgrind would take many minutes. The relay's drain is not counted for the same reason,
nor ``outbox_events`` (its updates are the ``sqlalchemy`` suite's, counted there).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import timing
from benchmarks.settings import Settings

# The suites whose loops are the client's work, and their modules.
COUNTED = {
    "redis": "redis_hit",
    "memory": "memory_hit",
    "manager": "entity_invalidation",
    "sqlalchemy": "sqlalchemy_writes",
}
MARKER = "os_getppid*"  # the C function behind os.getppid(), see timing.Marks
ROOT = Path(__file__).resolve().parent.parent


class CountingError(RuntimeError):
    """The counting run failed or its dumps do not match the marks it made."""


@dataclasses.dataclass(frozen=True)
class Counts:
    """Instructions per operation of every counted row, one figure per repeat."""

    per_row: dict[tuple[str, str], tuple[float, ...]]  # (table title, contestant) -> repeats
    settings: dict[str, object]
    valgrind: str

    def spread(self) -> float:
        """The largest relative difference between repeats of one row (0.004 is 0.4 %)."""
        worst = 0.0
        for values in self.per_row.values():
            if len(values) > 1 and min(values) > 0:
                worst = max(worst, max(values) / min(values) - 1)
        return worst

    def to_json(self) -> dict[str, Any]:
        return {
            "valgrind": self.valgrind,
            "settings": self.settings,
            "largest_spread_between_repeats": self.spread(),
            "rows": [
                {"table": title, "contestant": contestant, "per_op": list(values)}
                for (title, contestant), values in self.per_row.items()
            ],
        }


def valgrind_version() -> str | None:
    """``valgrind-3.19.0``, or None when valgrind is not installed."""
    path = shutil.which("valgrind")
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def count(suites: Sequence[str], settings: Settings, *, repeats: int = 2) -> Counts:
    """Instructions per operation of every row of ``suites`` that counting applies to.

    Each repeat is one child process running every counted suite, so that the imports
    (the slowest part under callgrind) are paid once; the repeats run side by side, since
    the number of instructions a process executes does not depend on its neighbours.
    """
    version = valgrind_version()
    if version is None:
        raise CountingError("valgrind is not installed (or not on PATH)")
    counted = settings.counted()
    modules = [f"benchmarks.{COUNTED[suite]}" for suite in suites if suite in COUNTED]
    per_row: dict[tuple[str, str], list[float]] = {}
    if modules:
        print(
            f"Counting instructions under callgrind: {', '.join(modules)}, "
            f"{repeats} runs side by side (minutes) ...",
            flush=True,
        )
        for counts in count_modules(modules, counted, repeats=repeats):
            for key, value in counts.items():
                per_row.setdefault(key, []).append(value)
    return Counts(
        {key: tuple(values) for key, values in per_row.items()}, counted.to_json(), version
    )


def count_modules(
    modules: Sequence[str], settings: Settings, *, repeats: int = 1
) -> list[dict[tuple[str, str], float]]:
    """Instructions per operation of every row of the tables each ``module.run(settings)``
    makes, counted ``repeats`` times, each time in a child process under callgrind."""
    environment = {
        **os.environ,
        "PYTHONHASHSEED": "0",  # the same dict layouts and string hashes in every run
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # Compiled modules kept apart from the tree: compiling every import from source
        # under callgrind would take minutes.
        "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "freshcache-bench-pycache"),
    }
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="freshcache-callgrind-") as directory:
        folders = [Path(directory) / str(repeat) for repeat in range(repeats)]
        commands = []
        for repeat, folder in enumerate(folders):
            folder.mkdir()
            # A namespace each: one run's clean-up must not empty the other's cache.
            own = dataclasses.replace(settings, namespace=f"{settings.namespace}-c{repeat}")
            child = [sys.executable, "-m", "benchmarks.instructions", str(folder / "rows.json")]
            child += [json.dumps(own.to_json()), *modules]
            commands.append(child)
        # Once outside callgrind first, quickly: every module it imports gets compiled.
        subprocess.run(commands[0], cwd=ROOT, env=environment, capture_output=True, check=False)
        (folders[0] / "rows.json").unlink(missing_ok=True)
        running = [
            subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--dump-before={MARKER}",
                    f"--callgrind-out-file={folder / 'callgrind.out'}",
                    "--dump-line=no",
                    "--compress-strings=yes",
                    *command,
                ],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for folder, command in zip(folders, commands, strict=True)
        ]
        outputs = [process.communicate()[0] for process in running]
        return [
            _read(folder, process.returncode, output)
            for folder, process, output in zip(folders, running, outputs, strict=True)
        ]


def _read(folder: Path, returncode: int, output: str) -> dict[tuple[str, str], float]:
    report = folder / "rows.json"
    if returncode != 0 or not report.exists():
        tail = "\n".join(output.splitlines()[-15:])
        raise CountingError(f"the counting run failed under callgrind:\n{tail}")
    rows = json.loads(report.read_text())
    dumps = sorted(folder.glob("callgrind.out.*"), key=lambda path: int(path.suffix[1:]))
    if len(dumps) != rows["marks"]:
        raise CountingError(
            f"the counting run made {rows['marks']} marks but callgrind wrote "
            f"{len(dumps)} dumps: something else called os.getppid()"
        )
    totals = [_total(path) for path in dumps]
    return {
        (row["table"], row["contestant"]): (totals[second - 1] - totals[first - 1]) / ops
        for row in rows["rows"]
        for first, second, ops in [row["dumps"]]
    }


def _total(path: Path) -> int:
    """The instructions (``Ir``) a callgrind dump counted, from its ``totals:`` line."""
    with path.open() as lines:
        for line in lines:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise CountingError(f"{path.name} has no totals line")


# The child, under callgrind: ``python -m benchmarks.instructions MODULE REPORT SETTINGS``.


def _child(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("report", type=Path)
    parser.add_argument("settings")
    parser.add_argument("modules", nargs="+", help="modules whose run(settings) returns tables")
    args = parser.parse_args(argv)
    given = json.loads(args.settings)
    for name in ("tag_sizes", "transaction_sizes", "writers"):
        given[name] = tuple(given[name])
    settings = Settings(**given)
    timing.counting = marks = timing.Marks()
    rows = []
    for module in args.modules:
        for table in importlib.import_module(module).run(settings):
            rows.extend(
                {"table": table.title, "contestant": row.contestant, "dumps": row.samples.dumps}
                for row in table.rows
                if row.samples is not None and row.samples.dumps is not None
            )
    args.report.write_text(json.dumps({"marks": marks.count, "rows": rows}))


if __name__ == "__main__":
    _child(sys.argv[1:])
