"""Rules.tags_for_changes: the one way the manager, its batch and the session hooks turn changes into tags."""

from __future__ import annotations

import pytest

from freshcache import ConfigurationError, EntityChange, InvalidKeyError, Relation, Rule, Rules

from .rules import service_rules

CHANGES = [
    EntityChange("challenge", new={"id": 7, "user_id": 2, "title": "t"}),
    EntityChange("user", old={"id": 2, "score": 1}, new={"score": 2}),
    EntityChange("evaluation", old={"id": 1, "challenge_id": 7, "user_id": 2}),
]


def test_several_changes_touch_each_tag_once_in_the_order_first_touched() -> None:
    """The tags of several changes are every tag each change touches, once, in the order first touched."""
    rules = service_rules()
    each = [
        tag
        for change in CHANGES
        for tag in rules.tags_for(
            change.entity_type, new=change.new, old=change.old, changed=change.changed
        )
    ]

    assert tuple(dict.fromkeys(each)) == rules.tags_for_changes(CHANGES)
    assert (
        "challenge:7",
        "user:2:challenges",
        "user:2",
        "leaderboard",
        "challenge:7:evaluations",
        "user:2:evaluations",
    ) == rules.tags_for_changes(CHANGES)


def test_a_change_that_cannot_fill_its_tags_raises_unless_told_what_to_touch() -> None:
    """A change missing a value its tags need raises InvalidKeyError, or touches what ``unfillable`` gives for it alone."""
    rules = service_rules()
    unfillable = EntityChange("challenge", old={"id": 7, "title": "t"})  # no user_id
    changes = [CHANGES[1], unfillable]

    with pytest.raises(InvalidKeyError, match="user_id"):
        rules.tags_for_changes(changes)
    seen: list[EntityChange] = []

    def wide(change: EntityChange) -> tuple[str, ...]:
        seen.append(change)
        return ("challenge", "challenge#bulk")

    assert ("user:2", "leaderboard", "challenge", "challenge#bulk") == rules.tags_for_changes(
        changes, unfillable=wide
    )
    assert [unfillable] == seen


def test_unknown_types_are_refused_even_with_a_fallback() -> None:
    """A change of a type without rules is a configuration error, never a fallback's business."""
    with pytest.raises(ConfigurationError, match="no rules for entity type 'invoice'"):
        service_rules().tags_for_changes(
            [EntityChange("invoice", new={"id": 1})], unfillable=lambda change: ("x",)
        )


@pytest.mark.parametrize(
    ("fields", "changed", "fires"),
    [
        (None, frozenset({"name"}), True),
        (None, None, True),
        (frozenset({"score"}), None, True),
        (frozenset({"score"}), frozenset({"score", "name"}), True),
        (frozenset({"score"}), frozenset({"name"}), False),
    ],
)
def test_rules_and_relations_fire_alike(
    fields: frozenset[str] | None, changed: frozenset[str] | None, fires: bool
) -> None:
    """A rule and a relation on the same fields fire on the same changes (an insert or delete, None, fires both)."""
    rule = Rule("user", (), fields)
    relation = Relation("evaluation", "challenge", (("id", "challenge_id"),), fields)

    assert (fires, fires) == (rule.fires(changed), relation.fires(changed))


def test_the_rules_module_still_exports_its_types() -> None:
    """Rule and Relation are importable from where the registry lives, as before its split."""
    from freshcache._rules import Relation as RelationThere
    from freshcache._rules import Rule as RuleThere
    from freshcache._rules import Rules as RulesThere

    assert (Rule, Relation, Rules) == (RuleThere, RelationThere, RulesThere)
