"""What freshcache reads from mapped classes: entity types, values, changes, derived rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Mapper

from freshcache._exceptions import ConfigurationError, InvalidEntityError
from freshcache._invalidations import EntityChange
from freshcache._keys import parse_text
from freshcache._rules import Rules

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


# Per mapped class, asked several times in every flush: computed once.
_ENTITY_TYPES: dict[type[Any], str] = {}
_COLUMN_KEYS: dict[type[Any], tuple[str, ...]] = {}
_CASCADES: dict[type[Any], tuple[tuple[type[Any], str, str, str], ...]] = {}
_TEXT_TYPES: dict[tuple[type[Any], str], type[Any] | None] = {}


def entity_type_of(model: type[Any]) -> str:
    """``__freshcache_entity__`` if the class sets it, else its name in snake_case (``ChallengeEvaluation`` -> ``challenge_evaluation``)."""
    try:
        return _ENTITY_TYPES[model]
    except KeyError:
        explicit = getattr(model, "__freshcache_entity__", None)
        name = explicit if isinstance(explicit, str) else _CAMEL.sub("_", model.__name__).lower()
        _ENTITY_TYPES[model] = name
        return name


def mapper_of(model: type[Any]) -> Mapper[Any]:
    return inspect(model)  # type: ignore[no-any-return]


def column_keys(model: type[Any]) -> tuple[str, ...]:
    """The column attributes of a mapped class."""
    try:
        return _COLUMN_KEYS[model]
    except KeyError:
        keys = _COLUMN_KEYS[model] = tuple(a.key for a in mapper_of(model).column_attrs)
        return keys


def column_value(model: type[Any], key: str, value: Any) -> Any:
    """``value`` as column ``key`` holds it, so that an id given as text (``"5"``, a UUID in
    capitals) queries the same row and formats the same tag as the hooks' values."""
    if not isinstance(value, str):
        return value
    try:
        python_type = _TEXT_TYPES[(model, key)]
    except KeyError:
        column = mapper_of(model).columns.get(key)
        try:
            python_type = column.type.python_type if column is not None else None
        except NotImplementedError:
            python_type = None
        python_type = _TEXT_TYPES[(model, key)] = (
            None if python_type is None or issubclass(python_type, str) else python_type
        )
    if python_type is None:
        return value
    try:
        return parse_text(value, python_type)
    except (ValueError, ArithmeticError):
        raise InvalidEntityError(
            f"{entity_type_of(model)}.{key} holds {python_type.__name__} values, and {value!r} "
            "is not one"
        ) from None


def column_types(model: type[Any]) -> dict[str, type[Any] | None]:
    """Each column attribute's Python type (None where its type does not say)."""
    types: dict[str, type[Any] | None] = {}
    for attribute in mapper_of(model).column_attrs:
        try:
            types[attribute.key] = attribute.columns[0].type.python_type
        except NotImplementedError:
            types[attribute.key] = None
    return types


def load_columns(instance: Any) -> None:
    """Load the column values an instance does not hold (expired after a commit, deferred).

    Called before a flush, so that the change recorded after it has every field the
    rules may need; one SELECT for all expired columns, none when nothing is missing.
    """
    state = inspect(instance)
    if state.key is None:
        return  # not in the database yet
    for key in column_keys(type(instance)):
        if key in state.unloaded:
            getattr(instance, key)


def values_of(instance: Any) -> dict[str, Any]:
    """The loaded column values of an instance (never triggers a load)."""
    state = inspect(instance)
    loaded = state.dict
    return {key: loaded[key] for key in column_keys(type(instance)) if key in loaded}


def change_of(instance: Any, kind: str) -> EntityChange | None:
    """The change an instance carries at flush: ``insert``, ``update`` or ``delete``.

    Updates read each column's attribute history, so ``old`` holds the values before the
    change; an update that changed no column gives None.
    """
    entity_type = entity_type_of(type(instance))
    if kind == "insert":
        # A column left unset was inserted as NULL (or its server default, unknown here).
        new = dict.fromkeys(column_keys(type(instance)))
        new.update(values_of(instance))
        return EntityChange(entity_type, new=new)
    state = inspect(instance)
    if kind == "delete":
        old = values_of(instance)
        for key in column_keys(type(instance)):
            history = state.attrs[key].history
            if history.deleted:  # changed, then deleted: the row held the committed value
                old[key] = history.deleted[0]
        return EntityChange(entity_type, old=old)
    old, new, changed = {}, {}, set()
    for key in column_keys(type(instance)):
        history = state.attrs[key].history
        if history.added or history.deleted:
            changed.add(key)
            new[key] = history.added[0] if history.added else None
            if history.deleted:
                old[key] = history.deleted[0]
        elif key in state.dict:
            old[key] = new[key] = state.dict[key]
    if not changed:
        return None
    return EntityChange(entity_type, new=new, old=old, changed=frozenset(changed))


def parents_of(
    model: type[Any], candidates: Iterable[type[Any]] | None = None
) -> list[tuple[str, type[Any], str]]:
    """``(child attribute, parent class, parent attribute)`` for each foreign key to another mapped class.

    Parents are looked up among ``candidates``, or else among the classes of the model's registry.
    """
    mapper = mapper_of(model)
    pool = (
        list(candidates) if candidates is not None else [m.class_ for m in mapper.registry.mappers]
    )
    by_table = {mapper_of(candidate).local_table: candidate for candidate in pool}
    out = []
    for column in mapper.local_table.columns:
        for foreign_key in column.foreign_keys:
            parent = by_table.get(foreign_key.column.table)
            if parent is None or parent is model:
                continue
            out.append(
                (
                    mapper.get_property_by_column(column).key,
                    parent,
                    mapper_of(parent).get_property_by_column(foreign_key.column).key,
                )
            )
    return out


def database_cascades(model: type[Any]) -> tuple[tuple[type[Any], str, str, str], ...]:
    """``(child class, child attribute, parent attribute, action)`` for each foreign key to
    ``model``'s table whose ON DELETE is CASCADE or SET NULL: rows the database changes
    when ``model`` rows go, without the session seeing them."""
    try:
        return _CASCADES[model]
    except KeyError:
        pass
    parent_mapper = mapper_of(model)
    found = []
    for child_mapper in parent_mapper.registry.mappers:
        for column in child_mapper.local_table.columns:
            for foreign_key in column.foreign_keys:
                action = (foreign_key.ondelete or "").upper()
                if foreign_key.column.table is parent_mapper.local_table and action in (
                    "CASCADE",
                    "SET NULL",
                ):
                    found.append(
                        (
                            child_mapper.class_,
                            child_mapper.get_property_by_column(column).key,
                            parent_mapper.get_property_by_column(foreign_key.column).key,
                            action,
                        )
                    )
    cascades = _CASCADES[model] = tuple(found)
    return cascades


def list_tag_template(model: type[Any], child_key: str, parent: type[Any]) -> str:
    """``"user:{user_id}:challenges"``: the tag of a parent's list of these children."""
    table = cast(Table, mapper_of(model).local_table)
    return f"{entity_type_of(parent)}:{{{child_key}}}:{table.name}"


def bulk_tag(entity_type: str) -> str:
    """``"challenge#bulk"``: carried by every repository entry of the type, and bumped by bulk
    statements too large (or too opaque) to read row by row. Never equal to an entity tag."""
    return f"{entity_type}#bulk"


def entity_tag_template(model: type[Any]) -> str:
    """``"challenge:{id}"``: the type and its primary key's fields."""
    mapper = mapper_of(model)
    keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    return entity_type_of(model) + "".join(f":{{{key}}}" for key in keys)


@dataclass(frozen=True)
class TagScheme:
    """The tags of a mapped class: what ``rules_from_models`` writes and a repository reads.

    One declaration for both, so that a repository never caches under a tag that no
    rule touches.
    """

    entity_type: str
    entity: str  # "challenge:{id}": one entity
    wide: str  # "challenge": unfiltered lists
    bulk: str  # "challenge#bulk": bumped by the hooks, never by a rule
    lists: Mapping[str, str]  # {"user_id": "user:{user_id}:challenges"}: one parent's list

    def read_tags(self) -> dict[str, str]:
        """Each tag template a repository reads that a rule must touch on every change, with what it caches."""
        read = {
            self.entity: f"one {self.entity_type} by id",
            self.wide: f"lists of {self.entity_type}",
        }
        for child_key, template in self.lists.items():
            read[template] = f"lists of {self.entity_type} by {child_key}"
        return read


def tag_scheme(model: type[Any]) -> TagScheme:
    """The tag scheme of ``model``: a list tag for each foreign key to another mapped class of its registry."""
    entity_type = entity_type_of(model)
    return TagScheme(
        entity_type,
        entity_tag_template(model),
        entity_type,
        bulk_tag(entity_type),
        {
            child_key: list_tag_template(model, child_key, parent)
            for child_key, parent, _ in parents_of(model)
        },
    )


def rules_from_models(models: Iterable[type[Any]], rules: Rules | None = None) -> Rules:
    """Rules derived from mapped classes, merged into ``rules``: the same result before or after your own.

    For each class: its primary key's tag (``challenge:{id}``), a tag for the whole type
    (``challenge``, for unfiltered lists and bulk statements), for each foreign key to
    another mapped class the parent's list of children (``user:{user_id}:challenges``),
    and, when the parent is one of ``models``, a relation to it. A derived rule equal to
    one of yours is one rule; the columns are declared, so your rules' placeholders are
    checked against them.
    """
    rules = rules if rules is not None else Rules()
    models = list(models)
    for model in models:
        scheme = tag_scheme(model)
        rules.columns(scheme.entity_type, column_types(model))
        rules.derive(scheme.entity_type, tags=[scheme.entity, scheme.wide])
        for template in scheme.lists.values():
            rules.derive(scheme.entity_type, tags=[template])
        rules.derive(
            scheme.entity_type,
            relations=[
                (entity_type_of(parent), {parent_key: child_key})
                for child_key, parent, parent_key in parents_of(model, models)
            ],
        )
    return rules


def check_tag_scheme(scheme: TagScheme, rules: Iterable[Rules], reader: str) -> None:
    """Raise ConfigurationError unless some rule touches, on every change, each tag the scheme reads.

    ``rules`` are the writers' (every SessionInvalidation on the reader's sessions): a
    tag none of them touches would be served stale until its TTL.
    """
    rules = list(rules)
    for template, what in scheme.read_tags().items():
        if any(each.touches_on_every_change(scheme.entity_type, template) for each in rules):
            continue
        raise ConfigurationError(
            f"{reader} caches {what} under the tag {template!r}, which no rule touches on "
            f"every change of {scheme.entity_type}, so they would be served stale: pass the "
            f"model to rules_from_models, or add rules.entity({scheme.entity_type!r}, "
            f"tags=[{template!r}])"
        )


def writers_of(sessions: Any) -> list[Rules]:
    """The rules of each SessionInvalidation installed on a session factory (none: an empty list)."""
    return [hooks.manager.rules for hooks in hooks_of(sessions)]


def hooks_of(sessions: Any) -> list[Any]:
    """Each SessionInvalidation installed on a session factory."""
    from freshcache.integrations.sqlalchemy._hooks import SessionInvalidation

    # The hooks listen on the factory's session class; a session made (not begun: no I/O)
    # shows its listeners, the same way under a sessionmaker and an async_sessionmaker.
    session = sessions()
    dispatch = getattr(session, "sync_session", session).dispatch
    found = [getattr(listener, "__self__", None) for listener in dispatch.after_commit]
    return [hooks for hooks in found if isinstance(hooks, SessionInvalidation)]
