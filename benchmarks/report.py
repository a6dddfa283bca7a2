"""What a run leaves behind: ``benchmarks.json`` (machine, versions, every round and count) and the plot."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
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
    path: Path,
    tables: Sequence[Table],
    settings: Settings,
    machine: dict[str, Any],
    run: dict[str, Any],
) -> dict[str, Any]:
    """Everything the run measured, and how; returns what it wrote."""
    document = {
        **run,
        "machine": machine,
        "settings": settings.to_json(),
        "goals": summary(tables),
        "tables": [table.to_json() for table in tables],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return document


WALL, COUNTED = "#1565c0", "#ef6c00"


def write_chart(path: Path, tables: Sequence[Table], machine: dict[str, Any]) -> int:
    """One figure, one panel per table: each row's wall ratio and ratio in instructions to
    the table's reference, the goal as a dashed mark; returns the number of panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(2.0, 0.6 * len(table.rows) + 1.2) for table in tables]
    figure, axes = plt.subplots(
        len(tables),
        1,
        figsize=(10, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
        squeeze=False,
    )
    for axis, table in zip(axes[:, 0], tables, strict=True):
        _panel(axis, table)
    figure.suptitle(
        f"freshcache benchmarks, {machine['timestamp']}, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}\nblue: wall ratio (median; whiskers: quartiles by round), "
        "orange: ratio in client instructions; dashed: the goal; ✓ met, ✗ missed",
        fontsize=9,
    )
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(tables)


def _panel(axis: Any, table: Table) -> None:
    rows = [row for row in table.rows if row.samples is not None]
    shown: list[float] = []
    for position, row in enumerate(rows):
        wall = table.ratio(row) or 0.0
        spread = table.ratio_spread(row)
        error = None
        if spread is not None and row.contestant != table.reference:
            error = [[max(0.0, wall - spread[0])], [max(0.0, spread[1] - wall)]]
        axis.barh(position - 0.2, wall, height=0.4, color=WALL, xerr=error, capsize=2)
        shown.append(spread[1] if spread else wall)
        counted = table.instruction_ratio(row)
        label = format_ratio(wall)
        if counted is not None:
            axis.barh(position + 0.2, counted, height=0.4, color=COUNTED)
            shown.append(counted)
            label += f" / {format_ratio(counted)}"
        if table.rate is not None:
            label = f"{row.samples.per_second:,.0f}/s, " + label  # type: ignore[union-attr]
        verdict = table.verdict(row).met
        label += {None: "", True: "  ✓", False: "  ✗"}[verdict]
        axis.text(max(wall, counted or 0.0), position, f" {label}", va="center", fontsize=7)
        goal = _goal_line(table, row)
        if goal is not None:
            axis.plot([goal] * 2, [position - 0.45, position + 0.45], "k--", lw=1)
            shown.append(goal)
    axis.set_yticks(list(range(len(rows))), [row.contestant for row in rows], fontsize=8)
    axis.invert_yaxis()
    axis.axvline(1.0, color="black", linewidth=0.8)
    positive = [value for value in shown if value > 0]
    if positive and max(positive) / min(positive) > 20:
        axis.set_xscale("log")
    axis.set_xlim(right=_right_limit(positive, axis.get_xscale() == "log"))
    faster = "above 1 is faster" if table.rate else "above 1 is slower"
    axis.set_title(f"{table.title}\nratio to {table.reference} ({faster})", fontsize=9)
    axis.tick_params(axis="x", labelsize=8)


def _goal_line(table: Table, row: Row) -> float | None:
    """Where a row's goal falls on the ratio axis (a goal per second, over the reference's rate)."""
    if row.goal is None:
        return None
    if not row.goal.per_second:
        return row.goal.bound
    reference = table.row(table.reference).samples
    return None if reference is None else row.goal.bound / reference.per_second


def _right_limit(values: Sequence[float], log: bool) -> float:
    top = max(values, default=1.0)
    return 10 ** (math.log10(top) + 0.5) if log else top * 1.35
