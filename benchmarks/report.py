"""What a run leaves behind: ``latest.json`` (machine, versions, every round) and ``latest.png``."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.settings import Settings
from benchmarks.tables import Table, format_ratio

PACKAGES = (
    "freshcache",
    "redis",
    "hiredis",
    "cashews",
    "aiocache",
    "dogpile.cache",
    "cachetools",
    "matplotlib",
)


def machine_info(redis_url: str | None) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "redis_server": _redis_server_version(redis_url) if redis_url else None,
        "packages": versions,
    }


def _redis_server_version(url: str) -> str | None:
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return str(client.info("server")["redis_version"])
    except (redis.RedisError, OSError):
        return None


def summary(tables: Sequence[Table]) -> dict[str, list[str]]:
    """Each goal's row, by whether it was met."""
    out: dict[str, list[str]] = {"met": [], "missed": [], "not measured": []}
    for table in tables:
        for row in table.rows:
            if row.goal is None:
                continue
            met = table.met(row)
            outcome = "not measured" if met is None else "met" if met else "missed"
            out[outcome].append(f"{table.title}: {row.contestant} {row.goal}")
    return out


def write_json(
    path: Path, tables: Sequence[Table], settings: Settings, machine: dict[str, Any]
) -> None:
    document = {
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "machine": machine,
        "settings": settings.to_json(),
        "goals": summary(tables),
        "tables": [table.to_json() for table in tables],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def write_chart(path: Path, tables: Sequence[Table], machine: dict[str, Any]) -> None:
    """One panel per table: each contestant's ratio to the reference, coloured by its goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(2.0, 0.45 * len(table.rows) + 1.2) for table in tables]
    figure, axes = plt.subplots(
        len(tables),
        1,
        figsize=(10, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    axes = [axes] if len(tables) == 1 else list(axes)
    for axis, table in zip(axes, tables, strict=True):
        rows = [row for row in table.rows if row.samples is not None]
        ratios = [table.ratio(row) or 0.0 for row in rows]
        colours = [
            {None: "#9e9e9e", True: "#2e7d32", False: "#c62828"}[table.met(row)] for row in rows
        ]
        positions = range(len(rows))
        axis.barh(positions, ratios, color=colours)
        axis.set_yticks(list(positions), [row.contestant for row in rows], fontsize=8)
        axis.invert_yaxis()
        axis.axvline(1.0, color="black", linewidth=0.8)
        for position, row, ratio in zip(positions, rows, ratios, strict=True):
            axis.text(ratio, position, f" {format_ratio(ratio)}", va="center", fontsize=7)
            if row.goal is not None:
                axis.plot([row.goal.bound] * 2, [position - 0.4, position + 0.4], "k--", lw=1)
        shown = ratios + [row.goal.bound for row in rows if row.goal is not None]
        if shown and max(shown) / max(min(shown), 1e-9) > 20:
            axis.set_xscale("log")
        axis.set_xlim(right=_right_limit(shown, axis.get_xscale() == "log"))
        axis.set_title(f"{table.title}\nratio to {table.reference}", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(
        f"freshcache benchmarks, {machine['timestamp']}, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}  (green: goal met, red: missed, dashed: the goal)",
        fontsize=9,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _right_limit(ratios: Sequence[float], log: bool) -> float:
    top = max(ratios, default=1.0)
    return 10 ** (math.log10(top) + 0.4) if log else top * 1.25
