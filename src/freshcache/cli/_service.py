"""Calls to a running service's monitoring API, each failure one line (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from freshcache._exceptions import ConfigurationError
from freshcache.cli._failures import Unreachable

TIMEOUT = 10.0


def base_url(url: str) -> str:
    """``url`` without a trailing slash, once it is checked to be http(s)://host[:port]."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"--url {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"--url {url!r} is not the address of a service: expected http://host:port"
        )
    return url.rstrip("/")


def call(
    url: str, path: str, *, token: str | None = None, body: dict[str, Any] | None = None
) -> Any:
    """The JSON answer of GET (or POST ``body``) ``path``; an answer other than 2xx is one line."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise _refused(url + path, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach the service at {url}: {reason}") from None
    except ValueError:
        raise Unreachable(
            f"{url + path} did not answer with JSON: is it a freshcache service?"
        ) from None


def _refused(where: str, exc: urllib.error.HTTPError) -> Exception:
    detail = _detail(exc)
    if exc.code in (401, 403):
        return ConfigurationError(f"the service refused the token ({exc.code}): {detail}")
    if exc.code == 422:
        return ConfigurationError(f"the service rejected the request: {detail}")
    return Unreachable(f"{where} answered {exc.code}: {detail}")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)
