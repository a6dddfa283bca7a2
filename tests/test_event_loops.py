"""An AsyncCache on Redis used from another event loop than the one it connected in."""

from __future__ import annotations

import asyncio
import contextlib

from freshcache import AsyncCache, BackendError


def test_a_cache_used_in_another_event_loop_falls_back_to_the_loader(
    redis_url: str, namespace: str
) -> None:
    """Reads from other event loops fall back to the loader (counted) instead of raising the loop's RuntimeError."""
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    first = asyncio.new_event_loop()

    async def load(key: str) -> object:
        return await cache.get_or_load(key, lambda: f"loaded {key}", tags=["t"])

    async def invalidate() -> None:
        await cache.invalidate_tags(["t"])

    try:
        assert "loaded a" == first.run_until_complete(load("a"))  # connects in the first loop
        for key in ("b", "c", "d"):
            assert f"loaded {key}" == asyncio.run(load(key))
        assert cache.metrics.backend_errors >= 1
        # The one error an invalidation may raise: the manager queues and retries it.
        with contextlib.suppress(BackendError):
            asyncio.run(invalidate())
    finally:
        # The connections belong to the first loop: only there can they be closed.
        first.run_until_complete(cache.aclose())
        first.close()
