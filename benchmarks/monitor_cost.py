"""What the consistency monitor costs a writer, in CPU instructions per invalidation (callgrind).

Each measurement runs one process under ``valgrind --tool=callgrind`` twice, with ``SHORT``
and ``LONG`` iterations, and divides the difference of the two instruction totals by the
difference of the iterations: start-up, imports and connections cancel. An iteration
fills one entry under a tag (so the tag has a version to check) and invalidates the tag
with the sync ``Cache``; with the monitor on, the samples are drained before the process
ends, so its checks (on its worker thread, or in the drain) are counted too. Wall-clock
timings on a shared machine are noise; instruction counts are not.

    uv run python -m benchmarks.monitor_cost            # every backend and rate
    uv run python -m benchmarks.monitor_cost --one memory 0.01 2000   # one payload run
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from freshcache import Cache, ConsistencyMonitor

SHORT, LONG = 300, 1_300
# "fills": the iteration without its invalidation, to tell the invalidation's own cost.
RATES = ("fills", "off", "0.01", "1.0")
BACKENDS = ("memory", "redis")
REDIS_URL = "redis://127.0.0.1:6379/0"


def payload(backend: str, rate: str, iterations: int) -> None:
    """The measured process: ``iterations`` fills and invalidations, the monitor at ``rate``."""
    url = (
        "memory://" if backend == "memory" else f"{REDIS_URL}?namespace=cost-{uuid.uuid4().hex[:8]}"
    )
    cache = Cache.from_url(url)
    sampled = rate not in ("off", "fills")
    monitor = ConsistencyMonitor(cache, rate=float(rate), delay=0) if sampled else None
    for i in range(iterations):
        tag = f"t:{i}"
        cache.get_or_load(tag, lambda: 1, tags=[tag])
        if rate != "fills":
            cache.invalidate_tags([tag])
    if monitor is not None:
        monitor.drain()
        assert monitor.snapshot()["inconsistent"] == 0
        monitor.close()
    cache.clear()
    cache.close()


def instructions(backend: str, rate: str, iterations: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-m", "benchmarks.monitor_cost", "--one", backend, rate, str(iterations)],
            check=True, capture_output=True,
        )  # fmt: skip
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert match is not None, "callgrind wrote no totals"
        return int(match.group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "RATE", "ITERATIONS"))
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    args = parser.parse_args(argv)
    if args.one:
        backend, rate, iterations = args.one
        payload(backend, rate, int(iterations))
        return 0
    print(
        "| backend | monitor | instructions per fill + invalidation | the monitor's | of the invalidation's |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for backend in args.backends:
        per: dict[str, float] = {}
        for rate in RATES:
            short, long = instructions(backend, rate, SHORT), instructions(backend, rate, LONG)
            per[rate] = (long - short) / (LONG - SHORT)
            if rate == "fills":
                continue
            invalidation = per["off"] - per["fills"]
            extra = per[rate] - per["off"]
            label = "off" if rate == "off" else f"rate {rate}"
            mine = "" if rate == "off" else f"{extra:+,.0f}"
            share = (
                f"{invalidation:,.0f} alone" if rate == "off" else f"{extra / invalidation:+.1%}"
            )
            print(f"| {backend} | {label} | {per[rate]:,.0f} | {mine} | {share} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
