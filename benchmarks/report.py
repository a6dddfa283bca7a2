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
from benchmarks.tables import Row, Table, format_ratio

PACKAGES = (
    "freshcache",
    "redis",
    "hiredis",
    "cashews",
    "aiocache",
    "dogpile.cache",
    "cachetools",
    "sqlalchemy",
    "psycopg",
    "orjson",
    "matplotlib",
)


def machine_info(redis_url: str | None, database_url: str | None = None) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "redis_server": _redis_server_version(redis_url) if redis_url else None,
        "postgres_server": _postgres_server_version(database_url) if database_url else None,
        "packages": versions,
    }


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _redis_server_version(url: str) -> str | None:
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as client:
            return str(client.info("server")["redis_version"])
    except (redis.RedisError, OSError):
        return None


def _postgres_server_version(url: str) -> str | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("show server_version")).scalar())
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


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
        "machine": {**machine, "load_average_at_end": load_average()},
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
        bars = _bars(table, rows)
        colours = [
            {None: "#9e9e9e", True: "#2e7d32", False: "#c62828"}[table.met(row)] for row in rows
        ]
        positions = range(len(rows))
        axis.barh(positions, [value for value, _ in bars], color=colours)
        axis.set_yticks(list(positions), [row.contestant for row in rows], fontsize=8)
        axis.invert_yaxis()
        for position, (value, label) in zip(positions, bars, strict=True):
            axis.text(value, position, f" {label}", va="center", fontsize=7)
        goals = [_goal_line(table, row) for row in rows]
        for position, goal in zip(positions, goals, strict=True):
            if goal is not None:
                axis.plot([goal] * 2, [position - 0.4, position + 0.4], "k--", lw=1)
        reference = _reference_line(table)
        if reference is not None:
            axis.axvline(reference, color="black", linewidth=0.8)
        shown = [value for value, _ in bars] + [goal for goal in goals if goal is not None]
        if shown and max(shown) / max(min(shown), 1e-9) > 20:
            axis.set_xscale("log")
        axis.set_xlim(right=_right_limit(shown, axis.get_xscale() == "log"))
        measure = (
            f"{table.rate}; the solid line: {table.reference}"
            if table.rate
            else f"ratio to {table.reference}"
        )
        axis.set_title(f"{table.title}\n{measure}", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(
        f"freshcache benchmarks, {machine['timestamp']}, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}  (green: goal met, red: missed, dashed: the goal)",
        fontsize=9,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bars(table: Table, rows: Sequence[Row]) -> list[tuple[float, str]]:
    """Each row's bar and label: its ratio, or in a table with a rate its throughput and ratio."""
    bars = []
    for row in rows:
        ratio = table.ratio(row)
        if table.rate is not None and row.samples is not None:
            rate = row.samples.per_second
            bars.append((rate, f"{rate:,.0f}/s ({format_ratio(ratio)})"))
        else:
            bars.append((ratio or 0.0, format_ratio(ratio)))
    return bars


def _goal_line(table: Table, row: Row) -> float | None:
    """Where a row's goal falls on the panel's axis."""
    if row.goal is None:
        return None
    if table.rate is None or row.goal.per_second:
        return row.goal.bound
    reference = table.row(table.reference).samples
    return None if reference is None else row.goal.bound * reference.per_second


def _reference_line(table: Table) -> float | None:
    if table.rate is None:
        return 1.0
    reference = table.row(table.reference).samples
    return None if reference is None else reference.per_second


def _right_limit(ratios: Sequence[float], log: bool) -> float:
    top = max(ratios, default=1.0)
    return 10 ** (math.log10(top) + 0.4) if log else top * 1.25
