"""What one rule or one relation declares, and which changes fire it: values, no registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._keys import Template


class _OnFields:
    """Fires on a change of one of ``fields``, or on any change when ``fields`` is None."""

    fields: frozenset[str] | None

    def fires(self, changed: frozenset[str] | None) -> bool:
        """Whether a change of ``changed`` fires it (None: an insert or a delete, every field)."""
        return self.fields is None or changed is None or not self.fields.isdisjoint(changed)


@dataclass(frozen=True)
class Rule(_OnFields):
    """``entity``'s changes (of ``fields``, or any when None) touch ``tags``."""

    entity: str
    tags: tuple[Template, ...]
    fields: frozenset[str] | None = None
    # Derived from a model (rules_from_models) rather than written: the same rule written
    # as well is one rule, whichever came first.
    derived: bool = field(default=False, compare=False)

    @property
    def texts(self) -> frozenset[str]:
        return frozenset(template.text for template in self.tags)


@dataclass(frozen=True)
class Relation(_OnFields):
    """A change of ``child`` touches the tags that name its ``parent``, read from the child by ``keys``."""

    child: str
    parent: str
    keys: tuple[tuple[str, str], ...]  # (parent field, child field)
    fields: frozenset[str] | None = None
    derived: bool = field(default=False, compare=False)

    def parent_values(self, child_values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The parent's fields from the child's values; None if the child has no parent (a null key)."""
        values = {}
        for parent_field, child_field in self.keys:
            value = child_values.get(child_field)
            if value is None:
                return None
            values[parent_field] = value
        return values
