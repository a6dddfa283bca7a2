"""``docs/benchmarks.md``: the prose is written by hand, every figure by the run.

The page holds generated regions between ``<!-- generated: NAME -->`` and
``<!-- /generated: NAME -->``; a run replaces what is between each pair and keeps
everything else as written. ``run`` is the machine, versions, load and counts; ``goals``
every goal and whether it was met; ``suite:NAME`` that suite's tables; ``plot`` the chart.
A region the page lacks is added at its end, so a new suite never goes unreported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from benchmarks.tables import Table, format_ratio, format_verdict

REGION = re.compile(
    r"(<!-- generated: (?P<name>[\w:]+) -->\n)(?P<body>.*?)(<!-- /generated: (?P=name) -->)",
    re.DOTALL,
)


def render(
    template: str,
    *,
    tables: Sequence[Table],
    suites: Sequence[str],
    all_suites: Sequence[str],
    document: dict[str, Any],
    chart: str,
) -> str:
    """``template`` with every generated region filled from this run."""
    regions = {
        "run": _run(document),
        "goals": _goals(tables),
        "plot": f"![Every table's ratios, wall and instructions]({chart})\n",
    }
    for suite in all_suites:
        shown = [table for table in tables if table.suite == suite]
        if suite not in suites:
            body = f"*The `{suite}` suite was not part of this run.*\n"
        elif not shown:
            body = "*No table.*\n"
        else:
            body = "\n\n".join(table.to_markdown() for table in shown) + "\n"
        regions[f"suite:{suite}"] = body
    filled: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in regions:
            return match[0]  # a region of another tool: left alone
        filled.add(name)
        return f"{match[1]}\n{regions[name]}\n{match[4]}"

    page = REGION.sub(replace, template)
    for name, body in regions.items():
        if name not in filled:
            page += f"\n<!-- generated: {name} -->\n\n{body}\n<!-- /generated: {name} -->\n"
    return page


def _load(values: Sequence[float] | None) -> str:
    return "not known" if not values else ", ".join(f"{value:.2f}" for value in values)


def _run(document: dict[str, Any]) -> str:
    machine = document["machine"]
    packages = ", ".join(
        f"{name} {version}" for name, version in machine["packages"].items() if version
    )
    counting = document.get("instructions")
    if counting is None:
        counted = f"Instruction counts: not measured ({document.get('instructions_skipped')})."
    else:
        settings = counting["settings"]
        counted = (
            f"Instruction counts: {counting['valgrind']}, `--tool=callgrind`, the client process "
            f"only; each loop run at n and 2n operations (n = {settings['redis_ops']:,} Redis "
            f"hits, {settings['memory_ops']:,} memory hits, {settings['manager_entities']:,} or "
            f"more entity invalidations in {settings['transactions_per_writer']:,} or more "
            f"transactions, {settings['updates']:,} updates), "
            f"{counting['repeats']} counting runs per suite, `PYTHONHASHSEED=0`. The largest "
            f"difference between two counting runs of one row: "
            f"**{counting['largest_spread_between_repeats']:.2%}**."
        )
    quick = " **Quick mode: tiny counts, the figures mean little.**" if document["quick"] else ""
    return "\n".join(
        [
            f"- **Command:** `{document['command']}`{quick}",
            f"- **When:** {machine['timestamp']}, {document['duration_seconds']:.0f} s.",
            f"- **Machine:** {machine['cpu_count']} CPUs, {machine['platform']}, "
            f"{machine['implementation']} {machine['python']}; Redis "
            f"{machine['redis_server'] or '-'}, PostgreSQL {machine['postgres_server'] or '-'}.",
            f"- **Packages:** {packages}.",
            f"- **Load average** (1, 5, 15 minutes) **at the start:** "
            f"{_load(machine['load_average'])}; **at the end:** "
            f"{_load(machine['load_average_at_end'])}.",
            f"- **Wall time:** {document['settings']['rounds']} interleaved rounds; "
            f"{document['settings']['redis_ops']:,} Redis hits, "
            f"{document['settings']['memory_ops']:,} memory hits, "
            f"{document['settings']['updates']:,} updates per contestant per round.",
            f"- {counted}",
            "- **Raw results:** every round's figure and every count in "
            f"`{document['json_name']}`.",
            "",
        ]
    )


def _goals(tables: Sequence[Table]) -> str:
    lines = [
        "| table | contestant | goal | wall ratio (by round: quartiles) | ratio in instructions "
        "| met? |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    met = missed = 0
    for table in tables:
        for row in table.rows:
            if row.goal is None:
                continue
            verdict = table.verdict(row)
            met += verdict.met is True
            missed += verdict.met is False
            wall = (
                f"{row.samples.per_second:,.0f}/s"
                if row.goal.per_second and row.samples is not None
                else table.shown_ratio(row)
            )
            lines.append(
                f"| {table.title} | {row.contestant} | {row.goal} | {wall} "
                f"| {format_ratio(table.instruction_ratio(row))} | {format_verdict(verdict)} |"
            )
    return f"**{met} goals met, {missed} missed.**\n\n" + "\n".join(lines) + "\n"
