"""The service's test hooks: refused under production settings, and each doing what it names."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None, reason="the service needs its extra"
)


@pytest.mark.parametrize(
    ("hook", "value"),
    [("FRESHCACHE_TEST_FILL_DELAY", "0.5"), ("FRESHCACHE_TEST_SKIP_INVALIDATION", "true")],
)
def test_production_settings_refuse_each_test_hook(
    monkeypatch: pytest.MonkeyPatch, hook: str, value: str
) -> None:
    """With FRESHCACHE_ENV=production a test hook is refused at start-up, naming the variable."""
    from freshcache.app.settings import Settings

    monkeypatch.setenv("FRESHCACHE_ENV", "production")
    monkeypatch.setenv(hook, value)
    with pytest.raises(ValueError, match=hook):
        Settings()
    monkeypatch.setenv("FRESHCACHE_ENV", "test")
    Settings()  # the same hook outside production is accepted


async def test_a_delayed_fill_is_rejected_when_a_write_lands_during_the_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FRESHCACHE_TEST_FILL_DELAY holds the fill after the load; a write then lands and the fill is refused."""
    from freshcache.app import service as services
    from freshcache.app.models import Base
    from freshcache.app.settings import Settings

    monkeypatch.setattr(services.random, "uniform", lambda low, high: high)  # the longest delay
    service = services.build(Settings(data_dir=tmp_path, test_fill_delay=0.3, seed=False))
    try:
        async with service.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        user = await service.users.add(email="a@example.com", name="before")
        read = asyncio.create_task(service.users.get(user.id))
        await asyncio.sleep(0.1)  # the load is done; the fill waits
        await service.users.update(user.id, name="after")
        assert "before" == (await read).name  # the read overlapped the write
        assert 1 == service.cache.metrics.snapshot()["stale_fills_rejected"]
        assert "after" == (await service.users.get(user.id)).name
    finally:
        await service.manager.aclose()
        await service.cache.aclose()
        await service.engine.dispose()


async def test_skipping_invalidation_leaves_the_cached_value(tmp_path: Path) -> None:
    """FRESHCACHE_TEST_SKIP_INVALIDATION: a write answered, and the cache still serves the old value."""
    from freshcache.app import service as services
    from freshcache.app.models import Base
    from freshcache.app.settings import Settings

    service = services.build(Settings(data_dir=tmp_path, test_skip_invalidation=True, seed=False))
    try:
        async with service.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        user = await service.users.add(email="a@example.com", name="before")
        assert "before" == (await service.users.get(user.id)).name
        await service.users.update(user.id, name="after")
        assert "before" == (await service.users.get(user.id)).name
    finally:
        await service.manager.aclose()
        await service.cache.aclose()
        await service.engine.dispose()
