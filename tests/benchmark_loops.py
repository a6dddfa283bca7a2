"""Two loops of known relative cost, for the test of the instruction counting (not a test itself)."""

from __future__ import annotations

from benchmarks.settings import Settings
from benchmarks.tables import Table
from benchmarks.timing import SyncLoop, measure

ONCE = "the work once per operation"
TWICE = "the work twice per operation"


def _work() -> int:
    total = 0
    for index in range(200):
        total += index * index
    return total


def _once(ops: int) -> None:
    for _ in range(ops):
        _work()


def _twice(ops: int) -> None:
    for _ in range(ops):
        _work()
        _work()


def run(settings: Settings) -> list[Table]:
    loops: dict[str, SyncLoop] = {ONCE: _once, TWICE: _twice}
    results = measure(loops, rounds=settings.rounds, ops=settings.memory_ops)
    table = Table(suite="loops", title="Known loops", reference=ONCE, goal="none")
    for name in loops:
        table.add(name, results[name])
    return [table]
