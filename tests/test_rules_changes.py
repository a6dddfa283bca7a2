"""Rules.tags_for_changes: the one way the manager, its batch and the session hooks turn changes into tags."""

from __future__ import annotations

import datetime

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


@pytest.mark.parametrize(
    ("before", "after", "tags"),
    [
        (5, 5, ("owner:5",)),
        (5, 6, ("owner:5", "owner:6")),
        # Equal, and yet different tags: both sides are formatted, as an unequal pair is.
        (True, 1, ("owner:true", "owner:1")),
        (
            datetime.time(12, tzinfo=datetime.timezone.utc),
            datetime.time(13, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
            ("owner:12%3A00%3A00%2B00%3A00", "owner:13%3A00%3A00%2B01%3A00"),
        ),
    ],
)
def test_an_update_touches_the_tags_of_both_sides_however_equal_they_look(
    before: object, after: object, tags: tuple[str, ...]
) -> None:
    """An unchanged field names one tag; equal values that encode differently name both."""
    rules = (
        Rules()
        .entity("item", tags=["owner:{owner}"])
        .relation("part", "item", keys={"owner": "owner"})
    )
    for entity_type in ("item", "part"):
        found = rules.tags_for(
            entity_type,
            old={"owner": before, "title": "a"},
            new={"owner": after, "title": "b"},
            changed={"title"},
        )
        assert found == tags


def test_a_rule_added_after_the_first_change_is_used_by_the_next() -> None:
    """Rules compile at a type's first change; registering more compiles them again."""
    rules = Rules().entity("item", tags=["item:{id}"])
    assert rules.tags_for("item", new={"id": 1}) == ("item:1",)

    rules.entity("item", tags=["items"]).relation("part", "item", keys={"id": "item_id"})
    assert rules.tags_for("item", new={"id": 1}) == ("item:1", "items")
    assert rules.tags_for("part", new={"item_id": 1}) == ("item:1",)
