"""One entity type's rules and relations compiled into what a change needs to find its tags.

:class:`~freshcache.Rules` compiles a plan per entity type the first time a change of it
is seen (and again after any registration): the templates, already parsed and checked,
with the fields that fire them, and each relation's parent templates picked out once (the
ones its keys fill entirely). An update formats the old values only for the templates
whose fields hold different values on the two sides; the others name the same tag.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ._exceptions import InvalidKeyError
from ._keys import Template
from ._rule_types import Relation, Rule

# Types whose equal values always encode alike: an unchanged field of one of these formats
# the same tag on both sides. (Equal times in two time zones, or True and 1, do not.)
_SAME_WHEN_EQUAL = frozenset({int, str, bool, uuid.UUID, bytes, type(None)})

Fields = frozenset[str] | None


def _fires(fields: Fields, changed: Fields) -> bool:
    return fields is None or changed is None or not fields.isdisjoint(changed)


def _unchanged(names: tuple[str, ...], old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether both sides hold the same value, of a type that encodes equal values alike, for each name."""
    for name in names:
        if name not in old:
            return False  # formatting the old side says which field is missing
        before, after = old[name], new[name]
        if before is after:
            continue
        kind = type(before)
        if kind is not type(after) or kind not in _SAME_WHEN_EQUAL or before != after:
            return False
    return True


class _Templates:
    """A rule's templates: the fields that fire it and how to fill each."""

    __slots__ = ("fields", "templates")

    def __init__(self, fields: Fields, templates: tuple[Template, ...]) -> None:
        self.fields = fields
        self.templates = templates


class _ParentTemplates:
    """A relation: the fields that fire it, its keys, and the parent's templates they fill."""

    __slots__ = ("fields", "key_fields", "keys", "templates")

    def __init__(self, relation: Relation, parent_rules: tuple[Rule, ...]) -> None:
        self.fields = relation.fields
        self.keys = relation.keys
        self.key_fields = tuple(child for _, child in relation.keys)
        parent_fields = {parent for parent, _ in relation.keys}
        # A template without placeholders (a type-wide tag such as ``challenges``) is left
        # out: one child's change says nothing about every parent.
        self.templates = tuple(
            template
            for rule in parent_rules
            for template in rule.tags
            if template.fields and set(template.fields) <= parent_fields
        )

    def parent_values(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        parent: dict[str, Any] = {}
        for parent_field, child_field in self.keys:
            value = values.get(child_field)
            if value is None:
                return None
            parent[parent_field] = value
        return parent


class EntityPlan:
    """The compiled rules and relations of one entity type."""

    __slots__ = ("entity_type", "relations", "rules", "types")

    def __init__(
        self,
        entity_type: str,
        rules: tuple[Rule, ...],
        relations: tuple[tuple[Relation, tuple[Rule, ...]], ...],
        types: dict[str, type[Any]] | None,
    ) -> None:
        self.entity_type = entity_type
        self.rules = tuple(_Templates(rule.fields, rule.tags) for rule in rules)
        self.relations = tuple(_ParentTemplates(r, parents) for r, parents in relations)
        self.types = types or None

    def add_tags(
        self,
        tags: dict[str, None],
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
        changed: Fields,
    ) -> None:
        """Add the tags of one change to ``tags``, old side first: an update gives both sides."""
        entity_type = self.entity_type
        for rule in self.rules:
            if not _fires(rule.fields, changed):
                continue
            same: list[str | None] = []
            if old is not None:
                for template in rule.templates:
                    tag = format_tag(entity_type, template, old)
                    if tag is not None:
                        tags[tag] = None
                    if new is not None:
                        same.append(tag if _unchanged(template.fields, old, new) else _NOT_SAME)
            if new is not None:
                for index, template in enumerate(rule.templates):
                    tag = same[index] if same else _NOT_SAME
                    if tag is _NOT_SAME:
                        tag = format_tag(entity_type, template, new)
                    if tag is not None:
                        tags[tag] = None
        for relation in self.relations:
            if not _fires(relation.fields, changed):
                continue
            if old is not None:
                self._add_parent_tags(tags, relation, old)
            if new is not None and (old is None or not _unchanged(relation.key_fields, old, new)):
                self._add_parent_tags(tags, relation, new)

    @staticmethod
    def _add_parent_tags(
        tags: dict[str, None], relation: _ParentTemplates, values: Mapping[str, Any]
    ) -> None:
        parent_values = relation.parent_values(values)
        if parent_values is not None:
            for template in relation.templates:
                tags[template.format(parent_values)] = None


# Stands for "not the same tag as the old side's": None already means "no tag".
_NOT_SAME = "\x00"


def format_tag(entity_type: str, template: Template, values: Mapping[str, Any]) -> str | None:
    """The tag, or None when a field it needs is null: ``user:{user_id}:challenges`` of a
    challenge without a user names nothing. A field that is missing altogether is an error."""
    for name in template.fields:
        if name in values and values[name] is None:
            return None
    try:
        return template.format(values)
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{entity_type}: {exc}") from None
