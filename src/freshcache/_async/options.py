"""The cache's options, checked before anything is built; ``from_url``'s split of them between cache and backend."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from freshcache._calls import async_check_loader
from freshcache._exceptions import ConfigurationError
from freshcache._metrics import CacheMetrics


def check_ttl_jitter(ttl_jitter: object) -> float:
    if (
        isinstance(ttl_jitter, (int, float))
        and not isinstance(ttl_jitter, bool)
        and 0.0 <= ttl_jitter < 1.0
    ):
        return ttl_jitter
    raise ConfigurationError(f"ttl_jitter is a fraction in [0, 1), not {ttl_jitter!r}")


def check_flags(**flags: object) -> None:
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{name} must be True or False, not {flag!r}")


def check_metrics(metrics: object) -> CacheMetrics:
    """``metrics``, or new ones when None."""
    if metrics is None:
        return CacheMetrics()
    if not isinstance(metrics, CacheMetrics):
        raise ConfigurationError(f"metrics must be a CacheMetrics, not {type(metrics).__name__}")
    return metrics


def check_call(loader: object, cache_none: object) -> None:
    """ConfigurationError for a loader or a cache_none that cannot work."""
    async_check_loader(loader)
    if cache_none is not None and not isinstance(cache_none, bool):
        raise ConfigurationError(f"cache_none must be True, False or None, not {cache_none!r}")


def split_url_options(
    cache_class: type[Any], url: str, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` as (the backend's, the cache's); an option neither takes is an error, with hints."""
    from freshcache._async.backends import registry

    backend_accepts = registry.backend_options(url)
    cache_accepts = set(inspect.signature(cache_class).parameters) - {"backend"}
    unknown = set(options) - cache_accepts - backend_accepts
    if unknown:
        hints = [
            f"{name} (did you mean {close[0]}?)" if close else name
            for name in sorted(unknown)
            for close in [
                [known for known in sorted(cache_accepts) if name in known.split("_")]
                or difflib.get_close_matches(name, cache_accepts | backend_accepts, 1)
            ]
        ]
        raise ConfigurationError(
            f"{cache_class.__name__}.from_url({url.split('://')[0]}://...) does not take "
            f"{', '.join(hints)}; the cache takes {', '.join(sorted(cache_accepts))}, "
            f"its backend {', '.join(sorted(backend_accepts))}"
        )
    backend_options = {k: v for k, v in options.items() if k in backend_accepts}
    cache_options = {k: v for k, v in options.items() if k not in backend_accepts}
    return backend_options, cache_options
