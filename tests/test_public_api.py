"""The public names of the package."""

from __future__ import annotations

import freshcache
import freshcache.testing


def test_all_is_sorted() -> None:
    """__all__ is kept in sorted order, so a diff shows what changed."""
    assert sorted(freshcache.__all__) == freshcache.__all__


def test_all_is_complete() -> None:
    """Every public name defined at the package's top level is listed in __all__, and exists."""
    public = {name for name in vars(freshcache) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(freshcache, name)).__name__ == "module"}
    assert public - modules == set(freshcache.__all__) - {"__version__"}
    for name in freshcache.__all__:
        assert getattr(freshcache, name) is not None


def test_redis_classes_load_on_first_use() -> None:
    """The Redis backends and transports are reachable from the package without importing redis up front."""
    assert "AsyncRedisBackend" == freshcache.AsyncRedisBackend.__name__
    assert "RedisBackend" == freshcache.RedisBackend.__name__
    assert "AsyncRedisStreamsTransport" == freshcache.AsyncRedisStreamsTransport.__name__
    assert "RedisStreamsTransport" == freshcache.RedisStreamsTransport.__name__


def test_sync_classes_are_real_sync_code() -> None:
    """The sync API is generated code with plain methods, not wrappers around asyncio.run."""
    import inspect

    assert not inspect.iscoroutinefunction(freshcache.Cache.get_or_load)
    assert inspect.iscoroutinefunction(freshcache.AsyncCache.get_or_load)
    source = inspect.getsource(freshcache.Cache)
    assert "asyncio" not in source
