"""The checks a rule, a relation or a declaration of columns passes before it is registered.

Each raises ConfigurationError naming what is wrong, when the rules are written, so that
no mistake waits for the first commit to show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._exceptions import ConfigurationError
from ._keys import ENCODED_TYPES, Template, encodes

_ENTITY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def check_entity(name: object) -> str:
    if not isinstance(name, str) or _ENTITY_NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"entity type must be a name such as 'user' or 'billing.invoice', not {name!r}"
        )
    return name


def check_fields(fields: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if fields is None:
        return None
    if isinstance(fields, str):
        raise ConfigurationError(
            f"{what}: fields must be a collection of names, not the string {fields!r}"
        )
    names = frozenset(fields)
    if not names:
        raise ConfigurationError(
            f"{what}: fields must name at least one field (or be None for any change)"
        )
    bad = sorted(name for name in names if not (isinstance(name, str) and name.isidentifier()))
    if bad:
        raise ConfigurationError(
            f"{what}: fields must be identifiers, not {', '.join(map(repr, bad))}"
        )
    return names


def check_known(
    entity_type: str,
    templates: Iterable[Template],
    fields: frozenset[str] | None,
    known: frozenset[str] | None,
    types: Mapping[str, type[Any]],
) -> None:
    """Placeholders and fields name ``known`` columns (when declared), of types a tag can hold."""
    if known is None:
        return
    used = {name for template in templates for name in template.fields} | (fields or frozenset())
    unknown = used - known
    if unknown:
        raise ConfigurationError(
            f"{entity_type} has no field {', '.join(sorted(unknown))}; its fields are {', '.join(sorted(known))}"
        )
    for template in templates:
        for name in template.fields:
            if name in types and not encodes(types[name]):
                raise ConfigurationError(
                    f"{entity_type}: tag {template.text!r} formats {name}, a field of "
                    f"type {types[name].__name__}; placeholders take {ENCODED_TYPES}"
                )
