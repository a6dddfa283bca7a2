"""A clean run of the consistency monitor on Redis: every invalidation sampled, none may fail.

Concurrent workers each loop over entities of their own range: read the entity through
``get_or_load`` (a hit, or a load that fills under its tags' versions), then invalidate
its tags (``--tags`` of them, in one call) through the manager, as a write would; more readers keep filling the same keys
meanwhile, so fills race the invalidations. The monitor samples every invalidation
(``rate=1.0``) and checks it after ``--delay`` seconds. Prints the monitor's report as
JSON; exits 1 if it found an inconsistency.

    uv run python -m benchmarks.monitor_clean_run --checks 100000
    uv run python -m benchmarks.monitor_clean_run --checks 320000 --tags 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

from freshcache import AsyncCache, AsyncConsistencyMonitor, AsyncInvalidationManager


async def run(
    url: str,
    checks: int,
    workers: int,
    args_readers: int,
    entities: int,
    delay: float,
    tags_per_entity: int,
) -> dict[str, Any]:
    namespace = f"monitor-run-{uuid.uuid4().hex[:8]}"
    cache = AsyncCache.from_url(f"{url}?namespace={namespace}")
    manager = AsyncInvalidationManager(cache)
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=delay, max_queued=1_000_000)
    per_worker = checks // (workers * tags_per_entity)

    def tags_of(entity: int) -> list[str]:
        if tags_per_entity == 1:
            return [f"entity:{entity}"]
        return [f"entity:{entity}:{n}" for n in range(tags_per_entity)]

    done = 0

    async def load(key: str) -> dict[str, Any]:
        return {"key": key, "loaded_at": time.time()}

    async def writer(number: int) -> None:
        nonlocal done
        for step in range(per_worker):
            entity = number * entities + step % entities
            key, tags = f"entity:{entity}", tags_of(entity)
            await cache.get_or_load(key, lambda key=key: load(key), tags=tags)
            await manager.invalidate_tags(tags)
            done += 1

    async def reader(number: int, stop: asyncio.Event) -> None:
        step = 0
        while not stop.is_set():
            entity = number * entities + step % entities
            await cache.get_or_load(f"entity:{entity}", lambda: load("r"), tags=tags_of(entity))
            step += 1

    async def progress(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(5)
            snapshot = monitor.snapshot()
            print(
                f"  {done:,} invalidations, {snapshot['checked']:,} tags checked, "
                f"{snapshot['inconsistent']} inconsistent",
                file=sys.stderr,
            )

    started = time.perf_counter()
    cpu_started = time.process_time()
    stop = asyncio.Event()
    readers = [asyncio.create_task(reader(n, stop)) for n in range(args_readers)]
    reporter = asyncio.create_task(progress(stop))
    await asyncio.gather(*(writer(n) for n in range(workers)))
    stop.set()
    await asyncio.gather(*readers, reporter)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(delay)  # the last samples' delay, then every check is made
    await monitor.drain()
    report = monitor.report()
    report.update(
        invalidations=done,
        seconds=round(elapsed, 1),
        cpu_seconds=round(time.process_time() - cpu_started, 1),
        workers=workers,
        readers=args_readers,
        tags_per_invalidation=tags_per_entity,
        lease_waits=cache.metrics.lease_waits,
        hits=cache.metrics.hits,
        loads=cache.metrics.loads,
        stale_fills_rejected=cache.metrics.stale_fills_rejected,
    )
    await cache.clear()
    await monitor.aclose()
    await manager.aclose()
    await cache.aclose()
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--checks", type=int, default=100_000, help="tag invalidations, all sampled"
    )
    parser.add_argument("--tags", type=int, default=1, help="tags per entity and invalidation")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--readers", type=int, default=4, help="tasks filling meanwhile")
    parser.add_argument("--entities", type=int, default=500, help="per worker")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before a check")
    args = parser.parse_args(argv)
    report = asyncio.run(
        run(args.url, args.checks, args.workers, args.readers, args.entities, args.delay, args.tags)
    )
    print(json.dumps(report, indent=2))
    return 1 if report["inconsistent"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
