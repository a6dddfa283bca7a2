"""``freshcache rules MODULE[:ATTR]`` or ``--url``: the rules table of a module's Rules or of a running service."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from freshcache._exceptions import ConfigurationError
from freshcache._rules import Rules
from freshcache.cli._failures import Unreachable
from freshcache.cli._service import base_url, call


def register(app: typer.Typer) -> None:
    @app.command(
        "rules",
        help="Print a rules table: of a running service (--url, its monitoring API), or the "
        "one found at MODULE[:ATTR] (a Rules object, or a function returning one; without "
        "ATTR, the module's attribute 'rules' or its one Rules).",
    )
    def rules(
        where: str | None = typer.Argument(None, metavar="[MODULE[:ATTR]]"),
        url: str | None = typer.Option(
            None, help="A running service, http://host:port: its manager's rules."
        ),
        token: str | None = typer.Option(
            None, envvar="FRESHCACHE_ADMIN_TOKEN", help="Its admin token, if it guards reads."
        ),
    ) -> None:
        if (where is None) == (url is None):
            raise ConfigurationError(
                "rules takes MODULE[:ATTR] or --url http://host:port of a service, one of the two"
            )
        if url is not None:
            described = call(base_url(url), "/api/system/cache/rules", token=token)
            if not isinstance(described, dict) or "rules" not in described:
                raise Unreachable(f"{url} answered no rules table: is it a freshcache service?")
        else:
            assert where is not None
            described = found(where).describe()
        Console().print(table(described))


def found(where: str) -> Rules:
    """The Rules at ``module[:attr]``, calling ``attr`` if it is a function; else one clear error."""
    name, _, attr = where.partition(":")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {name!r}: {exc}") from None
    if attr:
        if not hasattr(module, attr):
            raise ConfigurationError(f"module {name!r} has no attribute {attr!r}")
        value: Any = getattr(module, attr)
    elif isinstance(getattr(module, "rules", None), Rules):
        value = module.rules
    else:
        candidates = [v for v in vars(module).values() if isinstance(v, Rules)]
        if len(candidates) != 1:
            raise ConfigurationError(
                f"module {name!r} holds {len(candidates)} Rules objects: name one, {name}:ATTR"
            )
        value = candidates[0]
    if callable(value) and not isinstance(value, Rules):
        value = value()
    if not isinstance(value, Rules):
        raise ConfigurationError(f"{where} is a {type(value).__name__}, not freshcache.Rules")
    return value


def table(described: dict[str, Any]) -> Table:
    """Each rule and relation (as ``Rules.describe`` gives them), one row: the entity type, the fields it fires on, what it touches."""
    shown = Table()
    shown.add_column("entity type")
    shown.add_column("on change of")
    shown.add_column("touches")
    for entity_type in described["entity_types"]:
        for rule in described["rules"]:
            if rule["entity_type"] == entity_type:
                shown.add_row(entity_type, _on(rule["fields"]), ", ".join(rule["tags"]))
        for relation in described["relations"]:
            if relation["entity_type"] == entity_type:
                by = ", ".join(f"{p}={c}" for p, c in relation["keys"].items())
                shown.add_row(
                    entity_type, _on(relation["fields"]), f"-> {relation['parent']} ({by})"
                )
    return shown


def _on(fields: list[str] | None) -> str:
    return "any field" if fields is None else ", ".join(fields)
