"""A recorded history of reads and writes, and its check, register by register.

Each key is a single-writer register: its writer writes 1, 2, 3... in order, each write
beginning after the one before it answered, and the key starts at 0. A read is checked
against its key's writes and the key's other reads (times are one monotonic clock):

stale
    a read returns a value older than a write that completed before the read began;
future
    a read returns a value whose write began after the read ended (or was never issued);
non-monotonic
    a read that begins after another read ended returns an older value.

A write whose outcome is unknown (it timed out, or the service failed while answering)
may have happened at any moment after it began, or never: its value read late is
neither stale nor a step back, since the write may have landed after its successors.
Values from writes that answered, and the initial 0, are held to every rule.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

KINDS = ("stale", "future", "non-monotonic")
EXAMPLES = 5


@dataclass(frozen=True)
class Write:
    """The write of ``value`` to ``key``; ``end`` is None when its outcome is unknown."""

    key: str
    start: int
    end: int | None
    value: int


@dataclass(frozen=True)
class Read:
    """A read of ``value`` from ``key`` through ``route``, between ``start`` and ``end``."""

    key: str
    start: int
    end: int
    value: int
    route: str = ""


@dataclass
class Verdict:
    """How many reads break each rule, with a few of them to show."""

    reads: int
    writes: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    # Every violating read, as (kind, the read's start and end in monotonic ns, its example):
    # when it happened, to set beside the faults of the run.
    found: list[tuple[str, int, int, str]] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, example: str, read: Read) -> None:
        self.counts[kind] += 1
        self.found.append((kind, read.start, read.end, example))
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)


def check_history(writes: Sequence[Write], reads: Sequence[Read]) -> Verdict:
    """Checks every read against the writes and the other reads of its key (see the module doc)."""
    verdict = Verdict(reads=len(reads), writes=len(writes))
    writes_by_key: dict[str, list[Write]] = defaultdict(list)
    reads_by_key: dict[str, list[Read]] = defaultdict(list)
    for write in writes:
        writes_by_key[write.key].append(write)
    for read in reads:
        reads_by_key[read.key].append(read)
    for key, key_reads in reads_by_key.items():
        _check_key(key, writes_by_key[key], key_reads, verdict)
    return verdict


def _check_key(key: str, writes: list[Write], reads: list[Read], verdict: Verdict) -> None:
    by_value = {write.value: write for write in writes}
    # One writer: the writes that answered did not overlap, so their ends rise with the values.
    answered = sorted((w for w in writes if w.end is not None), key=lambda w: w.value)
    answered_ends = [w.end or 0 for w in answered]

    def certain(value: int) -> bool:
        """Whether ``value`` is the initial one or a write's that answered."""
        return value == 0 or (value in by_value and by_value[value].end is not None)

    for read in reads:
        done = bisect.bisect_left(answered_ends, read.start)  # answered before the read began
        floor = answered[done - 1].value if done else 0
        if read.value < floor and certain(read.value):
            verdict.add(
                "stale",
                f"{key}: {read.route} read {read.value} though write {floor} had answered",
                read,
            )
        write = by_value.get(read.value)
        if read.value != 0 and (write is None or write.start > read.end):
            verdict.add(
                "future", f"{key}: {read.route} read {read.value} before its write began", read
            )
    # A sweep over reads by start, with the newest value among the reads already ended.
    by_end = sorted(reads, key=lambda r: r.end)
    newest: Read | None = None
    ended = 0
    for read in sorted(reads, key=lambda r: r.start):
        while ended < len(by_end) and by_end[ended].end < read.start:
            if newest is None or by_end[ended].value > newest.value:
                newest = by_end[ended]
            ended += 1
        if newest is not None and read.value < newest.value and certain(read.value):
            verdict.add(
                "non-monotonic",
                f"{key}: {read.route} read {read.value} after {newest.route} "
                f"had returned {newest.value}",
                read,
            )
