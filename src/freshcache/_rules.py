"""Which tags each change of each entity touches: pure, no I/O.

A rule says "a change of a ``challenge`` touches ``challenge:{id}`` and
``user:{user_id}:challenges``". Tags are formatted from the old values *and* the new ones,
so a challenge moved from user 1 to user 2 touches both users' lists. A rule with
``fields`` fires only when one of those fields changed (an insert or a delete changes
every field); a rule without fires on every change. A relation carries a child's change
to its parent: an evaluation of challenge 7 touches challenge 7's tags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, overload

from ._exceptions import ConfigurationError, InvalidKeyError
from ._invalidations import EntityChange
from ._keys import Template, parse_text
from ._rule_checks import check_entity, check_fields, check_known
from ._rule_plans import EntityPlan, format_tag
from ._rule_types import Relation, Rule

__all__ = ["Relation", "Rule", "Rules"]


class Rules:
    """The registry of rules and relations, with the table that shows them."""

    def __init__(self) -> None:
        self._rules: dict[str, list[Rule]] = {}
        self._relations: dict[str, list[Relation]] = {}
        self._columns: dict[str, frozenset[str]] = {}
        self._types: dict[str, dict[str, type[Any]]] = {}
        # Each type's rules compiled at its first change; any registration starts afresh.
        self._plans: dict[str, EntityPlan] = {}

    # Registration

    def columns(
        self, entity_type: str, names: Iterable[str] | Mapping[str, type[Any] | None]
    ) -> Rules:
        """Declare an entity's fields; its rules' placeholders and fields are then checked against them.

        Given as ``{name: type}``, a placeholder on a field whose values cannot go into a
        tag (a JSON column's dict) is refused too, here rather than at the first commit.
        """
        entity_type = check_entity(entity_type)
        declared = check_fields(names, f"columns of {entity_type}")
        assert declared is not None
        if isinstance(names, Mapping):
            self._types[entity_type] = {k: v for k, v in names.items() if v is not None}
        before = self._columns.get(entity_type, declared)
        if before != declared:
            raise ConfigurationError(
                f"columns of {entity_type} are declared twice, differently: "
                f"{', '.join(sorted(before))} and {', '.join(sorted(declared))}"
            )
        self._columns[entity_type] = declared
        self._plans.clear()
        for rule in self._rules.get(entity_type, ()):
            self._check_known(entity_type, rule.tags, rule.fields)
        for relation in self._relations.get(entity_type, ()):
            self._check_known(
                entity_type,
                (),
                frozenset(c for _, c in relation.keys) | (relation.fields or frozenset()),
            )
        return self

    def entity(
        self, entity_type: str, *, tags: Iterable[str], fields: Iterable[str] | None = None
    ) -> Rules:
        """Changes of ``entity_type`` (of ``fields``, or any) touch ``tags`` (templates).

        The same rule written twice is an error; a rule that ``rules_from_models`` derives
        as well, before or after, is one rule.
        """
        return self._add_rule(entity_type, tags, fields, derived=False)

    def _add_rule(
        self,
        entity_type: str,
        tags: Iterable[str],
        fields: Iterable[str] | None,
        *,
        derived: bool,
    ) -> Rules:
        entity_type = check_entity(entity_type)
        if isinstance(tags, str):
            raise ConfigurationError(
                f"rule for {entity_type}: tags must be a list, not the string {tags!r}"
            )
        try:
            templates = tuple(Template(tag, kind="tag") for tag in tags)
        except InvalidKeyError as exc:
            raise ConfigurationError(f"rule for {entity_type}: {exc}") from None
        if not templates:
            raise ConfigurationError(f"rule for {entity_type}: give at least one tag")
        field_set = check_fields(fields, f"rule for {entity_type}")
        self._check_known(entity_type, templates, field_set)
        rule = Rule(entity_type, templates, field_set, derived)
        existing = self._rules.setdefault(entity_type, [])
        for index, other in enumerate(existing):
            if other.texts != rule.texts or other.fields != field_set:
                continue
            if not (derived or other.derived):
                raise ConfigurationError(
                    f"duplicate rule for {entity_type}: tags {[t.text for t in templates]} "
                    f"on {'any change' if field_set is None else sorted(field_set)} are registered already"
                )
            existing[index] = replace(other, derived=derived and other.derived)
            return self
        existing.append(rule)
        self._plans.clear()
        return self

    def relation(
        self,
        child: str,
        parent: str,
        *,
        keys: Mapping[str, str],
        fields: Iterable[str] | None = None,
    ) -> Rules:
        """Changes of ``child`` touch ``parent``'s tags; ``keys`` maps parent fields to child fields.

        ``rules.relation("evaluation", "challenge", keys={"id": "challenge_id"})``: an
        evaluation's change touches every challenge tag formatted from ``{id}``.
        """
        return self._add_relation(child, parent, keys, fields, derived=False)

    def _add_relation(
        self,
        child: str,
        parent: str,
        keys: Mapping[str, str],
        fields: Iterable[str] | None,
        *,
        derived: bool,
    ) -> Rules:
        child, parent = check_entity(child), check_entity(parent)
        if not keys or not isinstance(keys, Mapping):
            raise ConfigurationError(
                f"relation {child} -> {parent}: keys maps the parent's fields to the child's, e.g. {{'id': '{parent}_id'}}"
            )
        pairs = tuple(sorted(keys.items()))
        for parent_field, child_field in pairs:
            if not (parent_field.isidentifier() and child_field.isidentifier()):
                raise ConfigurationError(
                    f"relation {child} -> {parent}: keys must be field names, not {keys!r}"
                )
        field_set = check_fields(fields, f"relation {child} -> {parent}")
        self._check_known(child, (), frozenset(c for _, c in pairs) | (field_set or frozenset()))
        if parent in self._columns:
            missing = {p for p, _ in pairs} - self._columns[parent]
            if missing:
                raise ConfigurationError(
                    f"relation {child} -> {parent}: {parent} has no field {', '.join(sorted(missing))}"
                )
        relation = Relation(child, parent, pairs, field_set, derived)
        existing = self._relations.setdefault(child, [])
        if relation in existing:
            index = existing.index(relation)
            if not (derived or existing[index].derived):
                raise ConfigurationError(f"duplicate relation {child} -> {parent} by {dict(pairs)}")
            existing[index] = replace(existing[index], derived=derived and existing[index].derived)
            return self
        existing.append(relation)
        self._plans.clear()
        return self

    def derive(
        self,
        entity_type: str,
        *,
        tags: Iterable[str] = (),
        relations: Iterable[tuple[str, Mapping[str, str]]] = (),
    ) -> Rules:
        """Add a rule (on any change) and relations derived from a model, merged with what is there.

        What ``rules_from_models`` calls: a derived rule or relation equal to one already
        registered, written or derived, is that one, not a duplicate.
        """
        tags = list(tags)
        if tags:
            self._add_rule(entity_type, tags, None, derived=True)
        for parent, keys in relations:
            self._add_relation(entity_type, parent, keys, None, derived=True)
        return self

    def _check_known(
        self, entity_type: str, templates: Iterable[Template], fields: frozenset[str] | None
    ) -> None:
        known, types = self._columns.get(entity_type), self._types.get(entity_type, {})
        check_known(entity_type, templates, fields, known, types)

    # Questions

    @property
    def entity_types(self) -> tuple[str, ...]:
        return tuple(sorted(set(self._rules) | set(self._relations)))

    def require(self, entity_type: str) -> None:
        """Raise ConfigurationError, naming the known types, unless ``entity_type`` has rules."""
        if entity_type not in self._rules and entity_type not in self._relations:
            known = ", ".join(self.entity_types) or "none"
            raise ConfigurationError(
                f"no rules for entity type {entity_type!r}; known types: {known}"
            )

    def touches_on_every_change(self, entity_type: str, template: str) -> bool:
        """Whether a rule touches the tag ``template`` (its text, ``"user:{id}"``) on any change of the type."""
        return any(
            rule.fields is None and template in rule.texts
            for rule in self._rules.get(entity_type, ())
        )

    def rules_for(self, entity_type: str) -> tuple[Rule, ...]:
        return tuple(self._rules.get(entity_type, ()))

    def relations_for(self, entity_type: str) -> tuple[Relation, ...]:
        return tuple(self._relations.get(entity_type, ()))

    def tags_for(
        self,
        entity_type: str,
        *,
        new: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        changed: Iterable[str] | None = None,
    ) -> tuple[str, ...]:
        """The tags a change touches: an insert gives ``new``, a delete ``old``, an update both.

        For an update, ``changed`` defaults to the fields whose values differ, and
        ``new`` may hold only the changed fields: the rest is taken from ``old``.
        """
        tags: dict[str, None] = {}
        self._add_tags(tags, entity_type, new, old, changed)
        return tuple(tags)

    def tags_for_changes(
        self,
        changes: Iterable[EntityChange],
        *,
        unfillable: Callable[[EntityChange], Iterable[str]] | None = None,
    ) -> tuple[str, ...]:
        """The tags several changes touch, each once, in the order they are first touched.

        A change whose values cannot fill its tags (a field missing, a text that is not of
        its field's type) raises InvalidKeyError, unless ``unfillable`` is given: then its
        tags are the ones ``unfillable(change)`` gives.
        """
        tags: dict[str, None] = {}
        for change in changes:
            if unfillable is None:
                self._add_tags(tags, change.entity_type, change.new, change.old, change.changed)
                continue
            found: dict[str, None] = {}
            try:
                self._add_tags(found, change.entity_type, change.new, change.old, change.changed)
            except InvalidKeyError:
                found = dict.fromkeys(unfillable(change))
            tags.update(found)
        return tuple(tags)

    def _add_tags(
        self,
        tags: dict[str, None],
        entity_type: str,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        changed: Iterable[str] | None,
    ) -> None:
        plan = self._plans.get(entity_type)
        if plan is None:
            plan = self._plan(entity_type)
        if new is None and old is None:
            raise ConfigurationError(
                f"a change of {entity_type} needs new= (insert), old= (delete) or both (update)"
            )
        if plan.types is not None:
            new, old = self._typed(entity_type, new), self._typed(entity_type, old)
        changed_set: frozenset[str] | None
        if new is not None and old is not None:
            new = {**old, **new}
            if changed is None:
                changed_set = frozenset(
                    k for k in new.keys() | old.keys() if old.get(k) != new.get(k)
                )
            else:
                changed_set = changed if isinstance(changed, frozenset) else frozenset(changed)
        else:
            changed_set = None  # an insert or a delete changes every field
        plan.add_tags(tags, old, new, changed_set)

    def _plan(self, entity_type: str) -> EntityPlan:
        """Compile the type's rules and relations (raising, naming the known types, if it has none)."""
        self.require(entity_type)
        relations = tuple(
            (relation, tuple(self._rules.get(relation.parent, ())))
            for relation in self._relations.get(entity_type, ())
        )
        plan = EntityPlan(
            entity_type,
            tuple(self._rules.get(entity_type, ())),
            relations,
            self._types.get(entity_type),
        )
        self._plans[entity_type] = plan
        return plan

    def _parent_tags(self, relation: Relation, parent_values: Mapping[str, Any]) -> list[str]:
        """The parent's tags that name this parent: templates filled entirely from the keys.

        A template without placeholders (a type-wide tag such as ``challenges``) is left
        out: one child's change says nothing about every parent.
        """
        return [
            template.format(parent_values)
            for rule in self._rules.get(relation.parent, ())
            for template in rule.tags
            if template.fields and set(template.fields) <= parent_values.keys()
        ]

    def tags_from_values(self, entity_type: str, values: Mapping[str, Any]) -> tuple[str, ...]:
        """Every tag of the type's rules (and its parents') that ``values`` can fill.

        For helpers such as "invalidate everything about user 5": templates that need a
        field not given are skipped; none at all is an error.
        """
        self.require(entity_type)
        values = self._typed(entity_type, values)
        tags: dict[str, None] = {}
        for rule in self._rules.get(entity_type, ()):
            for template in rule.tags:
                if set(template.fields) <= values.keys():
                    tag = format_tag(entity_type, template, values)
                    if tag is not None:
                        tags[tag] = None
        for relation in self._relations.get(entity_type, ()):
            parent_values = relation.parent_values(values)
            if parent_values is not None:
                tags.update(dict.fromkeys(self._parent_tags(relation, parent_values)))
        if not tags:
            raise ConfigurationError(
                f"no tag of {entity_type}'s rules can be filled from {', '.join(sorted(values)) or 'no values'}"
            )
        return tuple(tags)

    @overload
    def _typed(self, entity_type: str, values: Mapping[str, Any]) -> Mapping[str, Any]: ...
    @overload
    def _typed(self, entity_type: str, values: None) -> None: ...

    def _typed(
        self, entity_type: str, values: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """Values given as text for a typed field (a UUID's text, ``"5"``) as the field holds them,
        so that they format the tags the hooks' values do."""
        types = self._types.get(entity_type)
        if not types or values is None:
            return values
        typed = dict(values)
        for name, value in values.items():
            kind = types.get(name)
            if kind is not None and isinstance(value, str) and not issubclass(kind, str):
                try:
                    typed[name] = parse_text(value, kind)
                except (ValueError, ArithmeticError):
                    raise InvalidKeyError(
                        f"{entity_type}.{name} holds {kind.__name__} values, and {value!r} is not one"
                    ) from None
        return typed

    # Showing

    def describe(self) -> dict[str, Any]:
        """The rules and relations as plain data (JSON-ready): what the monitoring API answers.

        ``fields`` is None for a rule or relation that fires on any change.
        """
        rules: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        for entity_type in self.entity_types:
            for rule in self._rules.get(entity_type, ()):
                rules.append(
                    {
                        "entity_type": entity_type,
                        "fields": None if rule.fields is None else sorted(rule.fields),
                        "tags": [template.text for template in rule.tags],
                    }
                )
            for relation in self._relations.get(entity_type, ()):
                relations.append(
                    {
                        "entity_type": entity_type,
                        "fields": None if relation.fields is None else sorted(relation.fields),
                        "parent": relation.parent,
                        "keys": dict(relation.keys),
                    }
                )
        return {"entity_types": list(self.entity_types), "rules": rules, "relations": relations}

    def table(self) -> str:
        """The rules and relations as an aligned text table, for humans (and the CLI)."""
        rows = [("entity", "on change of", "touches")]
        for entity_type in self.entity_types:
            for rule in self._rules.get(entity_type, ()):
                on = "any field" if rule.fields is None else ", ".join(sorted(rule.fields))
                rows.append((entity_type, on, ", ".join(t.text for t in rule.tags)))
            for relation in self._relations.get(entity_type, ()):
                on = "any field" if relation.fields is None else ", ".join(sorted(relation.fields))
                by = ", ".join(f"{p}={c}" for p, c in relation.keys)
                rows.append((entity_type, on, f"-> {relation.parent} ({by})"))
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
