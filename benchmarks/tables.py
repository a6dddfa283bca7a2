"""A suite's result: contestants, their medians, ratios to a reference, and goals met or not.

A table is of latencies (median µs per operation; a ratio above 1 is slower than the
reference) or, when it names a ``rate``, of throughputs (operations per second; a ratio
above 1 is faster than the reference).

Beside the wall time a row may carry the client's instructions per operation (see
``benchmarks.instructions``). A goal on a ratio is then judged on both: met when the
ratio of instructions meets it and the wall time does not contradict it beyond its
spread, that is unless even the favourable quartile of the round-by-round wall ratios
misses it. Without counts, and for a goal in operations per second, the wall median alone
decides.
"""

from __future__ import annotations

import operator
import statistics
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
    instructions: tuple[float, ...] | None = None  # per operation, one figure per counting run


@dataclass(frozen=True)
class Verdict:
    met: bool | None  # None: no goal, or nothing measured
    why: str = ""  # which measure missed, or that the wall time alone decided


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

    def round_ratios(self, row: Row) -> list[float]:
        """The ratio in each round (rounds interleave the contestants, so they pair up)."""
        reference = self.row(self.reference).samples
        if row.samples is None or reference is None:
            return []
        pairs = zip(row.samples.per_op, reference.per_op, strict=False)
        if self.rate is not None:
            return [theirs / mine for mine, theirs in pairs]
        return [mine / theirs for mine, theirs in pairs]

    def ratio_spread(self, row: Row) -> tuple[float, float] | None:
        """The quartiles of the round-by-round ratios: the wall ratio's spread."""
        ratios = self.round_ratios(row)
        if len(ratios) < 2:
            return None
        low, _, high = statistics.quantiles(ratios, n=4)
        return low, high

    def instruction_ratio(self, row: Row) -> float | None:
        """Instructions over the reference's; in a table with a rate, theirs over the row's."""
        reference = self.row(self.reference).instructions
        if not row.instructions or not reference:
            return None
        mine, theirs = statistics.mean(row.instructions), statistics.mean(reference)
        if mine <= 0 or theirs <= 0:
            return None
        return theirs / mine if self.rate is not None else mine / theirs

    def verdict(self, row: Row) -> Verdict:
        goal = row.goal
        if goal is None or row.samples is None:
            return Verdict(None)
        if goal.per_second:
            return Verdict(goal.met(row.samples.per_second), "wall")
        ratio = self.ratio(row)
        if ratio is None:
            return Verdict(None)
        counted = self.instruction_ratio(row)
        if counted is None:
            return Verdict(goal.met(ratio), "wall only")
        if not goal.met(counted):
            return Verdict(False, "instructions")
        spread = self.ratio_spread(row) or (ratio, ratio)
        favourable = spread[0] if goal.comparison == "<=" else spread[1]
        if not goal.met(favourable):
            return Verdict(False, "wall")
        return Verdict(True)

    def met(self, row: Row) -> bool | None:
        return self.verdict(row).met

    def to_markdown(self) -> str:
        median = f"median {self.rate}" if self.rate else "median µs/op"
        per = f"per {self.rate.removesuffix('/s')}" if self.rate else "per op"
        lines = [
            f"### {self.title}",
            "",
            f"Goal: {self.goal}",
            "",
            f"| contestant | {median} | ratio to {self.reference} (by round: quartiles) "
            f"| instructions {per} | ratio in instructions | goal | met? |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            if row.samples is None:
                lines.append(f"| {row.contestant} | — | — | — | — | — | unavailable: {row.note} |")
                continue
            goal = "reference" if row.contestant == self.reference else str(row.goal or "—")
            value = (
                f"{row.samples.per_second:,.0f}" if self.rate else format_micros(row.samples.median)
            )
            lines.append(
                f"| {row.contestant} | {value} | {self.shown_ratio(row)} "
                f"| {format_instructions(row.instructions)} "
                f"| {format_ratio(self.instruction_ratio(row))} | {goal} "
                f"| {format_verdict(self.verdict(row))} |"
            )
        counted = [row.instructions for row in self.rows if row.instructions]
        repeats = [values for values in counted if len(values) > 1 and min(values) > 0]
        if repeats:
            spread = max(max(values) / min(values) - 1 for values in repeats)
            lines.extend(
                [
                    "",
                    f"Instructions: the mean of {len(repeats[0])} counting runs, which agree "
                    f"within {spread:.2%} on every row.",
                ]
            )
        if self.notes:
            lines.extend(["", *self.notes])
        return "\n".join(lines)

    def shown_ratio(self, row: Row) -> str:
        ratio = format_ratio(self.ratio(row))
        spread = self.ratio_spread(row)
        if row.contestant == self.reference or spread is None:
            return ratio
        return f"{ratio} ({format_ratio(spread[0])}-{format_ratio(spread[1])})"

    def to_json(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {
                "contestant": row.contestant,
                "ratio": self.ratio(row),
                "goal": str(row.goal) if row.goal else None,
                "met": self.met(row),
                "judged_on": self.verdict(row).why or "instructions and wall",
                "ratio_by_round_quartiles": self.ratio_spread(row),
                "instructions_per_op": list(row.instructions) if row.instructions else None,
                "instruction_ratio": self.instruction_ratio(row),
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


def format_instructions(values: tuple[float, ...] | None) -> str:
    if not values:
        return "—"
    mean = statistics.mean(values)
    if mean >= 1e6:
        return f"{mean / 1e6:.2f}M"
    return f"{mean / 1e3:.1f}k" if mean >= 1e4 else f"{mean:,.0f}"


def format_verdict(verdict: Verdict) -> str:
    if verdict.met is None:
        return "—"
    if verdict.met:
        return "yes (wall only)" if verdict.why == "wall only" else "yes"
    return f"**no** ({verdict.why})"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"
