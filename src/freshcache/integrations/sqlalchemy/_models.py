"""What freshcache reads from mapped classes: entity types, values, changes, derived rules."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Mapper

from freshcache._invalidations import EntityChange
from freshcache._rules import Rules

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


# Per mapped class, asked several times in every flush: computed once.
_ENTITY_TYPES: dict[type[Any], str] = {}
_COLUMN_KEYS: dict[type[Any], tuple[str, ...]] = {}
_CASCADES: dict[type[Any], tuple[tuple[type[Any], str, str, str], ...]] = {}


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


def rules_from_models(models: Iterable[type[Any]], rules: Rules | None = None) -> Rules:
    """Rules derived from mapped classes, for the types ``rules`` does not cover yet.

    For each class: its primary key's tag (``challenge:{id}``), a tag for the whole type
    (``challenge``, for unfiltered lists and bulk statements), and for each foreign key to
    another of the classes, the parent's list of children (``user:{user_id}:challenges``)
    and a relation to the parent.
    """
    rules = rules if rules is not None else Rules()
    models = list(models)
    covered = set(rules.entity_types)
    for model in models:
        entity_type = entity_type_of(model)
        if entity_type in covered:
            continue
        rules.columns(entity_type, column_keys(model))
        rules.entity(entity_type, tags=[entity_tag_template(model), entity_type])
        for child_key, parent, parent_key in parents_of(model, models):
            rules.entity(entity_type, tags=[list_tag_template(model, child_key, parent)])
            rules.relation(entity_type, entity_type_of(parent), keys={parent_key: child_key})
    return rules


def bulk_tag(entity_type: str) -> str:
    """``"challenge#bulk"``: carried by every repository entry of the type, and bumped by bulk
    statements too large (or too opaque) to read row by row. Never equal to an entity tag."""
    return f"{entity_type}#bulk"


def entity_tag_template(model: type[Any]) -> str:
    """``"challenge:{id}"``: the type and its primary key's fields."""
    mapper = mapper_of(model)
    keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    return entity_type_of(model) + "".join(f":{{{key}}}" for key in keys)
