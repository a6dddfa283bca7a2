"""``freshcache invalidate``: tags, keys, patterns or an entity, through a running service
(its admin API and token) or straight on a cache URL."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from freshcache._exceptions import BackendError, ConfigurationError
from freshcache.cli._failures import Unreachable
from freshcache.cli._service import base_url, call

PATH = "/api/system/cache/invalidate"


def register(app: typer.Typer) -> None:
    @app.command(
        "invalidate",
        help="Invalidate tags, keys, patterns or an entity, through a running service "
        "(--url, --token) or straight on a cache (--cache-url).",
    )
    def invalidate(
        tag: Annotated[
            list[str] | None, typer.Option("--tag", help="A tag to invalidate (repeatable).")
        ] = None,
        key: Annotated[
            list[str] | None, typer.Option("--key", help="A key to delete (repeatable).")
        ] = None,
        pattern: Annotated[
            list[str] | None,
            typer.Option("--pattern", help="A glob of keys to delete (repeatable)."),
        ] = None,
        confirm: bool = typer.Option(
            False, "--confirm", help="Allow a pattern matching everything ('*')."
        ),
        entity: str | None = typer.Option(
            None, help="An entity type whose rules give the tags (with --id; needs --url)."
        ),
        entity_id: str | None = typer.Option(None, "--id", help="The entity's id."),
        url: str | None = typer.Option(None, help="The running service, http://host:port."),
        token: str | None = typer.Option(
            None, envvar="FRESHCACHE_ADMIN_TOKEN", help="The service's admin token."
        ),
        cache_url: str | None = typer.Option(
            None, help="redis://...?namespace=... (or memory://) of the cache itself."
        ),
    ) -> None:
        tag, key, pattern = tag or [], key or [], pattern or []
        if not (tag or key or pattern or entity):
            raise ConfigurationError(
                "nothing to invalidate: give --tag, --key, --pattern or --entity with --id"
            )
        if (entity is None) != (entity_id is None):
            raise ConfigurationError("--entity and --id go together")
        if (url is None) == (cache_url is None):
            raise ConfigurationError(
                "give either --url (a running service, with --token) or --cache-url (the cache)"
            )
        if url is not None:
            if not token:
                raise ConfigurationError("--url needs the service's admin token: --token")
            selector = None if entity is None else {"type": entity, "id": _id(entity_id)}
            answer = _through_service(base_url(url), token, tag, key, pattern, confirm, selector)
        else:
            if entity is not None:
                raise ConfigurationError(
                    "--entity needs --url: an entity's tags come from the service's rules"
                )
            assert cache_url is not None
            answer = _on_cache(cache_url, tag, key, pattern, confirm)
        typer.echo(_described(answer))


def _id(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def _through_service(
    url: str,
    token: str,
    tags: list[str],
    keys: list[str],
    patterns: list[str],
    confirm: bool,
    entity: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tags": tags,
        "keys": keys,
        "patterns": patterns,
        "confirm": confirm,
        "source": "cli",
    }
    if entity is not None:
        body["entity"] = entity
    answer: dict[str, Any] = call(url, PATH, token=token, body=body)
    return answer


def _on_cache(
    cache_url: str, tags: list[str], keys: list[str], patterns: list[str], confirm: bool
) -> dict[str, Any]:
    from freshcache import Cache
    from freshcache._keys import validate_key, validate_pattern, validate_tag

    # Every argument checked before the first write, so a bad one leaves the cache as it was.
    try:
        for tag in tags:
            validate_tag(tag)
        for key in keys:
            validate_key(key)
        for pattern in patterns:
            validate_pattern(pattern, confirm_all=confirm)
    except ValueError as exc:
        raise ConfigurationError(str(exc).replace("confirm_all=True", "--confirm")) from None
    cache = Cache.from_url(cache_url)
    try:
        count = 0
        if tags:
            cache.invalidate_tags(tags)
        if keys:
            count += cache.invalidate_keys(keys)
        for pattern in patterns:
            count += cache.invalidate_pattern(pattern, confirm_all=confirm)
    except BackendError as exc:
        raise Unreachable(f"cannot reach the cache: {exc}") from None
    finally:
        cache.close()
    return {
        "tags": tags,
        "keys": keys,
        "patterns": patterns,
        "entity_types": [],
        "key_count": count,
        "applied": True,
    }


def _described(answer: dict[str, Any]) -> str:
    parts = [
        f"{name} {', '.join(answer.get(field) or [])}"
        for name, field in (
            ("tags", "tags"),
            ("keys", "keys"),
            ("patterns", "patterns"),
            ("entity types", "entity_types"),
        )
        if answer.get(field)
    ]
    applied = "" if answer.get("applied", True) else " (the backend failed: queued for retry)"
    return f"invalidated {'; '.join(parts)}; {answer.get('key_count', 0)} keys{applied}"
