"""Sequential latency, measured in interleaved rounds so that drift hits every contestant alike.

One caller runs one operation ``ops`` times in a row; the batch is timed as a whole and
divided by ``ops``. Each round runs one batch per contestant, in an order rotated from
round to round, and the figure quoted is the median over rounds: on a small, noisy
machine a neighbour's burst then spoils one round of every contestant, not one
contestant. Garbage collection is paused during a batch, as ``timeit`` does.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

SyncLoop = Callable[[int], object]
AsyncLoop = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Samples:
    """Seconds per operation, one figure per round."""

    per_op: tuple[float, ...]
    # Under callgrind (see benchmarks.instructions): the profile dumps that closed the run of
    # ``ops`` operations and the run of twice as many, and ``ops``.
    dumps: tuple[int, int, int] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)

    @property
    def per_second(self) -> float:
        """Operations per second at the median: the throughput a table with a rate shows."""
        return 1.0 / self.median

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.per_op) < 2:
            return self.per_op[0], self.per_op[0]
        low, _, high = statistics.quantiles(self.per_op, n=4)
        return low, high


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """``names`` starting at a different one each round, so no contestant always goes first."""
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


class _PausedGC:
    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.collect()  # cheap: what existed before the rounds is frozen (see _frozen_heap)
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Set the heap built so far aside, so that the collection before each batch stays short."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Marks:
    """Profile dumps asked of callgrind, which runs with ``--dump-before=os_getppid*``.

    Nothing else in a benchmark calls ``os.getppid``, so the n-th call closes dump file
    number n; the parent checks that the number of dumps matches :attr:`count`.
    """

    def __init__(self) -> None:
        self.count = 0

    def mark(self) -> int:
        os.getppid()
        self.count += 1
        return self.count


# Set in the process that runs under callgrind: the loops then run once at two lengths,
# each closed by a dump, instead of in timed rounds.
counting: Marks | None = None


def _counted(loops: Mapping[str, SyncLoop], ops: int, marks: Marks) -> dict[str, Samples]:
    out = {}
    for name, loop in loops.items():
        loop(max(1, ops // 10))
        with _PausedGC():
            marks.mark()
            started = time.perf_counter()
            loop(ops)
            once = marks.mark()
            loop(2 * ops)
            twice = marks.mark()
        out[name] = Samples(((time.perf_counter() - started) / (3 * ops),), (once, twice, ops))
    return out


async def _counted_async(
    loops: Mapping[str, AsyncLoop], ops: int, marks: Marks
) -> dict[str, Samples]:
    out = {}
    for name, loop in loops.items():
        await loop(max(1, ops // 10))
        with _PausedGC():
            marks.mark()
            started = time.perf_counter()
            await loop(ops)
            once = marks.mark()
            await loop(2 * ops)
            twice = marks.mark()
        out[name] = Samples(((time.perf_counter() - started) / (3 * ops),), (once, twice, ops))
    return out


def measure(loops: Mapping[str, SyncLoop], *, rounds: int, ops: int) -> dict[str, Samples]:
    """Median-ready per-op times of each synchronous loop, interleaved over ``rounds``."""
    if counting is not None:
        return _counted(loops, ops, counting)
    names = list(loops)
    for name in names:
        loops[name](max(1, ops // 10))  # warm-up: connections, caches, code paths
    per_op: dict[str, list[float]] = {name: [] for name in names}
    with _frozen_heap():
        for round_index in range(rounds):
            for name in rotated(names, round_index):
                with _PausedGC():
                    started = time.perf_counter()
                    loops[name](ops)
                    elapsed = time.perf_counter() - started
                per_op[name].append(elapsed / ops)
    return {name: Samples(tuple(times)) for name, times in per_op.items()}


async def measure_async(
    loops: Mapping[str, AsyncLoop], *, rounds: int, ops: int
) -> dict[str, Samples]:
    """The same as :func:`measure`, for loops that run on the event loop."""
    if counting is not None:
        return await _counted_async(loops, ops, counting)
    names = list(loops)
    for name in names:
        await loops[name](max(1, ops // 10))
    per_op: dict[str, list[float]] = {name: [] for name in names}
    with _frozen_heap():
        for round_index in range(rounds):
            for name in rotated(names, round_index):
                with _PausedGC():
                    started = time.perf_counter()
                    await loops[name](ops)
                    elapsed = time.perf_counter() - started
                per_op[name].append(elapsed / ops)
    return {name: Samples(tuple(times)) for name, times in per_op.items()}
