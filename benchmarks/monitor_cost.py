"""What the consistency monitor costs a writer, in CPU instructions per invalidation (callgrind).

One process per backend runs under ``valgrind --tool=callgrind --dump-before=os_getppid*``:
each ``os.getppid()`` it calls makes callgrind write the instructions counted since the
last one, so each phase below is counted alone, start-up and imports left out. A phase
runs ``n`` iterations of one mode, for ``n`` = ``SHORT`` and ``LONG``; the cost of an
iteration is the difference of the two phases over the difference of their lengths, so
what a phase pays once (a first sample, a worker thread started) cancels too.

An iteration fills one entry under a fresh tag (so the tag has a version to check) and
invalidates the tag with the sync ``Cache``. The modes: ``fills`` (no invalidation: to
tell the invalidation's own cost), ``off`` (no monitor), and the monitor at rate 0.01
and 1.0 (``delay=0``; the phase drains the samples before it ends, so the checks, on
the monitor's worker thread or in the drain, are counted too). Wall-clock timings on a
shared machine are noise; instruction counts are not.

    uv run python -m benchmarks.monitor_cost               # both backends, a Markdown table
    uv run python -m benchmarks.monitor_cost --backends memory
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from freshcache import Cache, ConsistencyMonitor

SHORT, LONG = 200, 1_000
MODES = ("fills", "off", "0.01", "1.0")
BACKENDS = ("memory", "redis")
REDIS_URL = "redis://127.0.0.1:6379/0"


def phases(backend: str) -> None:
    """The measured process: every mode at both lengths, each phase between two dumps."""
    namespace = f"cost-{uuid.uuid4().hex[:8]}"
    cache = Cache.from_url(
        "memory://" if backend == "memory" else f"{REDIS_URL}?namespace={namespace}"
    )
    for mode in MODES:
        for length in (SHORT, LONG):
            prefix = f"{mode}:{length}:"
            cache.get_or_load("warm", lambda: 1, tags=["warm"])  # connections and scripts ready
            os.getppid()  # dump: everything before this phase
            monitor = None
            if mode not in ("fills", "off"):
                monitor = ConsistencyMonitor(cache, rate=float(mode), delay=0)
            for i in range(length):
                tag = prefix + str(i)
                cache.get_or_load(tag, lambda: 1, tags=[tag])
                if mode != "fills":
                    cache.invalidate_tags([tag])
            if monitor is not None:
                monitor.drain()
                monitor.close()
            os.getppid()  # dump: this phase alone
            if monitor is not None:
                assert monitor.snapshot()["inconsistent"] == 0
    cache.clear()
    cache.close()


def measure(backend: str) -> dict[tuple[str, int], int]:
    """Instructions of each phase, by (mode, length)."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=os_getppid*", f"--callgrind-out-file={out}",
             sys.executable, "-m", "benchmarks.monitor_cost", "--phases", backend],
            check=True, capture_output=True,
        )  # fmt: skip
        parts: dict[int, int] = {}
        for path in Path(directory).iterdir():
            text = path.read_text()
            part = re.search(r"^part: (\d+)", text, re.MULTILINE)
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if part is not None and total is not None:
                parts[int(part.group(1))] = int(total.group(1))
    ordered = [parts[number] for number in sorted(parts)]
    # Parts alternate: before a phase, the phase; the last part is the exit.
    keys = [(mode, length) for mode in MODES for length in (SHORT, LONG)]
    assert len(ordered) == 2 * len(keys) + 1, (
        f"expected {2 * len(keys) + 1} dumps, got {len(ordered)}"
    )
    return {key: ordered[2 * index + 1] for index, key in enumerate(keys)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", metavar="BACKEND", help="run the measured process itself")
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    args = parser.parse_args(argv)
    if args.phases:
        phases(args.phases)
        return 0
    print(
        "| backend | monitor | instructions per fill + invalidation | the monitor's | against the invalidation's |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for backend in args.backends:
        counts = measure(backend)
        per = {
            mode: (counts[(mode, LONG)] - counts[(mode, SHORT)]) / (LONG - SHORT) for mode in MODES
        }
        invalidation = per["off"] - per["fills"]
        for mode in MODES[1:]:
            extra = per[mode] - per["off"]
            label = "off" if mode == "off" else f"rate {mode}"
            mine = "" if mode == "off" else f"{extra:+,.0f}"
            share = (
                f"{invalidation:,.0f} (the invalidation alone)"
                if mode == "off"
                else f"{extra / invalidation:+.1%}"
            )
            print(f"| {backend} | {label} | {per[mode]:,.0f} | {mine} | {share} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
