"""``freshcache rules MODULE[:ATTR]``: the rules table of a module's Rules, as a table."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from freshcache._exceptions import ConfigurationError
from freshcache._rules import Rules


def register(app: typer.Typer) -> None:
    @app.command(
        "rules",
        help="Print the rules found at MODULE[:ATTR]: a Rules object, or a function "
        "returning one; without ATTR, the module's attribute 'rules' or its one Rules.",
    )
    def rules(where: str = typer.Argument(..., metavar="MODULE[:ATTR]")) -> None:
        Console().print(table(found(where)))


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


def table(rules: Rules) -> Table:
    """Each rule and relation, one row: the entity type, the fields it fires on, what it touches."""
    shown = Table()
    shown.add_column("entity type")
    shown.add_column("on change of")
    shown.add_column("touches")
    for entity_type in rules.entity_types:
        for rule in rules.rules_for(entity_type):
            on = "any field" if rule.fields is None else ", ".join(sorted(rule.fields))
            shown.add_row(entity_type, on, ", ".join(t.text for t in rule.tags))
        for relation in rules.relations_for(entity_type):
            on = "any field" if relation.fields is None else ", ".join(sorted(relation.fields))
            by = ", ".join(f"{p}={c}" for p, c in relation.keys)
            shown.add_row(entity_type, on, f"-> {relation.parent} ({by})")
    return shown
