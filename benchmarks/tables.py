"""A suite's result: contestants, their medians, ratios to a reference, and goals met or not.

A table is of latencies (median µs per operation; a ratio above 1 is slower than the
reference) or, when it names a ``rate``, of throughputs (operations per second; a ratio
above 1 is faster than the reference).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from benchmarks.timing import Samples


@dataclass(frozen=True)
class Goal:
    """A bound on a row's ratio to the table's reference (``ratio <= 1.10``, ``ratio >= 2``),
    or with ``per_second`` on its throughput (``≥ 20,000/s``, in a table with a rate)."""

    comparison: str  # "<=" or ">="
    bound: float
    per_second: bool = False

    def met(self, value: float) -> bool:
        compare = operator.le if self.comparison == "<=" else operator.ge
        return bool(compare(value, self.bound))

    def __str__(self) -> str:
        sign = "≤" if self.comparison == "<=" else "≥"
        return f"{sign} {self.bound:,.0f}/s" if self.per_second else f"{sign} {self.bound:g}x"


def at_most(bound: float) -> Goal:
    return Goal("<=", bound)


def at_least(bound: float) -> Goal:
    return Goal(">=", bound)


def at_least_per_second(bound: float) -> Goal:
    return Goal(">=", bound, per_second=True)


@dataclass
class Row:
    contestant: str
    samples: Samples | None = None  # None when the contestant could not run
    goal: Goal | None = None
    note: str = ""  # why a contestant is unavailable


@dataclass
class Table:
    """One comparison; every ratio is a row's median over the reference row's median."""

    suite: str
    title: str
    reference: str
    goal: str  # the goal in words, printed above the table
    rows: list[Row] = field(default_factory=list)
    # "entity invalidations/s": samples are seconds per one of these, shown as a throughput.
    rate: str | None = None
    notes: list[str] = field(default_factory=list)  # printed under the table

    def add(
        self,
        contestant: str,
        samples: Samples | None,
        goal: Goal | None = None,
        note: str = "",
    ) -> None:
        self.rows.append(Row(contestant, samples, goal, note))

    def row(self, contestant: str) -> Row:
        return next(row for row in self.rows if row.contestant == contestant)

    def ratio(self, row: Row) -> float | None:
        """Time over the reference's time; in a table with a rate, throughput over its throughput."""
        reference = self.row(self.reference).samples
        if row.samples is None or reference is None:
            return None
        if self.rate is not None:
            return reference.median / row.samples.median
        return row.samples.median / reference.median

    def met(self, row: Row) -> bool | None:
        if row.goal is None or row.samples is None:
            return None
        if row.goal.per_second:
            return row.goal.met(row.samples.per_second)
        ratio = self.ratio(row)
        return None if ratio is None else row.goal.met(ratio)

    def to_markdown(self) -> str:
        median = f"median {self.rate}" if self.rate else "median µs/op"
        lines = [
            f"### {self.title}",
            "",
            f"Goal: {self.goal}",
            "",
            f"| contestant | {median} | ratio to {self.reference} | goal | met? |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            if row.samples is None:
                lines.append(f"| {row.contestant} | — | — | — | unavailable: {row.note} |")
                continue
            ratio = self.ratio(row)
            goal = "reference" if row.contestant == self.reference else str(row.goal or "—")
            met = {None: "—", True: "yes", False: "**no**"}[self.met(row)]
            value = (
                f"{row.samples.per_second:,.0f}" if self.rate else format_micros(row.samples.median)
            )
            lines.append(f"| {row.contestant} | {value} | {format_ratio(ratio)} | {goal} | {met} |")
        if self.notes:
            lines.extend(["", *self.notes])
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {
                "contestant": row.contestant,
                "ratio": self.ratio(row),
                "goal": str(row.goal) if row.goal else None,
                "met": self.met(row),
            }
            if row.samples is None:
                entry["unavailable"] = row.note
            else:
                low, high = row.samples.quartiles
                entry["median_us"] = row.samples.median * 1e6
                entry["quartiles_us"] = [low * 1e6, high * 1e6]
                entry["per_round_us"] = [seconds * 1e6 for seconds in row.samples.per_op]
                if self.rate is not None:
                    entry["median_per_second"] = row.samples.per_second
            rows.append(entry)
        return {
            "suite": self.suite,
            "title": self.title,
            "reference": self.reference,
            "goal": self.goal,
            "rate": self.rate,
            "notes": self.notes,
            "rows": rows,
        }


def format_micros(seconds: float) -> str:
    micros = seconds * 1e6
    if micros < 10:
        return f"{micros:.2f}"
    if micros < 1000:
        return f"{micros:.1f}"
    return f"{micros:,.0f}"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"
