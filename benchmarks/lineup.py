"""The contestants of one comparison, in table order; a peer that cannot run stays listed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from benchmarks.tables import Goal, Table
from benchmarks.timing import Samples

Loop = TypeVar("Loop")


class Lineup(Generic[Loop]):
    def __init__(self) -> None:
        self.loops: dict[str, Loop] = {}
        self._order: list[str] = []
        self._goals: dict[str, Goal | None] = {}
        self._unavailable: dict[str, str] = {}

    def add(self, contestant: str, loop: Loop, goal: Goal | None = None) -> None:
        self._order.append(contestant)
        self._goals[contestant] = goal
        self.loops[contestant] = loop

    def unavailable(self, contestant: str, error: BaseException, goal: Goal | None = None) -> None:
        """Keep a peer that failed to install or set up in the table, with the reason."""
        self._order.append(contestant)
        self._goals[contestant] = goal
        self._unavailable[contestant] = f"{type(error).__name__}: {error}"

    def table(
        self, results: Mapping[str, Samples], *, suite: str, title: str, reference: str, goal: str
    ) -> Table:
        table = Table(suite=suite, title=title, reference=reference, goal=goal)
        for contestant in self._order:
            table.add(
                contestant,
                results.get(contestant),
                self._goals[contestant],
                self._unavailable.get(contestant, ""),
            )
        return table
