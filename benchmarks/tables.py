"""A suite's result: contestants, their medians, ratios to a reference, and goals met or not."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from benchmarks.timing import Samples


@dataclass(frozen=True)
class Goal:
    """A bound on a row's ratio to the table's reference: ``ratio <= 1.10`` or ``ratio >= 2``."""

    comparison: str  # "<=" or ">="
    bound: float

    def met(self, ratio: float) -> bool:
        compare = operator.le if self.comparison == "<=" else operator.ge
        return bool(compare(ratio, self.bound))

    def __str__(self) -> str:
        return f"{'≤' if self.comparison == '<=' else '≥'} {self.bound:g}x"


def at_most(bound: float) -> Goal:
    return Goal("<=", bound)


def at_least(bound: float) -> Goal:
    return Goal(">=", bound)


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
        reference = self.row(self.reference).samples
        if row.samples is None or reference is None:
            return None
        return row.samples.median / reference.median

    def met(self, row: Row) -> bool | None:
        ratio = self.ratio(row)
        if row.goal is None or ratio is None:
            return None
        return row.goal.met(ratio)

    def to_markdown(self) -> str:
        lines = [
            f"### {self.title}",
            "",
            f"Goal: {self.goal}",
            "",
            f"| contestant | median µs/op | ratio to {self.reference} | goal | met? |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            if row.samples is None:
                lines.append(f"| {row.contestant} | — | — | — | unavailable: {row.note} |")
                continue
            ratio = self.ratio(row)
            goal = "reference" if row.contestant == self.reference else str(row.goal or "—")
            met = {None: "—", True: "yes", False: "**no**"}[self.met(row)]
            lines.append(
                f"| {row.contestant} | {format_micros(row.samples.median)} | "
                f"{format_ratio(ratio)} | {goal} | {met} |"
            )
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
            rows.append(entry)
        return {
            "suite": self.suite,
            "title": self.title,
            "reference": self.reference,
            "goal": self.goal,
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
