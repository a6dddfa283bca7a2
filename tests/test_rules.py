"""Rules: which tags each change of each entity touches."""

from __future__ import annotations

from typing import Any

import pytest

from freshcache import ConfigurationError, InvalidKeyError, Rules

from .rules import service_rules


@pytest.fixture
def rules() -> Rules:
    """The reference service's rules: users, challenges, evaluations."""
    return service_rules()


CASES: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    (
        "insert fires every rule from the new values",
        "user",
        {"new": {"id": 1, "name": "ada", "score": 0}},
        ("user:1", "leaderboard"),
    ),
    (
        "delete fires every rule from the old values",
        "user",
        {"old": {"id": 1, "name": "ada", "score": 0}},
        ("user:1", "leaderboard"),
    ),
    (
        "update of an unwatched field skips the field rule",
        "user",
        {
            "old": {"id": 1, "email": "a@x", "score": 0},
            "new": {"id": 1, "email": "b@x", "score": 0},
        },
        ("user:1",),
    ),
    (
        "update of a watched field fires the field rule",
        "user",
        {"old": {"id": 1, "score": 0}, "new": {"id": 1, "score": 5}},
        ("user:1", "leaderboard"),
    ),
    (
        "changed= overrides the computed difference",
        "user",
        {"old": {"id": 1, "score": 0}, "new": {"id": 1, "score": 0}, "changed": {"name"}},
        ("user:1", "leaderboard"),
    ),
    (
        "a partial new takes the rest from old",
        "user",
        {"old": {"id": 1, "score": 0}, "new": {"score": 9}},
        ("user:1", "leaderboard"),
    ),
    (
        "a moved relation touches the old and the new parent",
        "challenge",
        {"old": {"id": 7, "user_id": 1}, "new": {"id": 7, "user_id": 2}},
        ("challenge:7", "user:1:challenges", "user:2:challenges"),
    ),
    (
        "a child's change reaches its parent through the relation",
        "evaluation",
        {"new": {"id": 3, "challenge_id": 7, "user_id": 2}},
        ("challenge:7:evaluations", "user:2:evaluations", "leaderboard", "challenge:7"),
    ),
]


@pytest.mark.parametrize(
    ("name", "entity", "change", "expected"),
    [c for c in CASES if c[3] is not None],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_tags_for(
    rules: Rules, name: str, entity: str, change: dict[str, Any], expected: tuple[str, ...]
) -> None:
    """Each kind of change touches exactly the tags the table says (see the case name)."""
    assert expected == rules.tags_for(entity, **change)


def test_a_null_value_skips_its_tag_and_a_missing_one_is_an_error(rules: Rules) -> None:
    """A tag whose field is null names nothing and is skipped; a field absent from the values is an error."""
    assert ("user:2:evaluations", "leaderboard") == rules.tags_for(
        "evaluation", new={"id": 3, "challenge_id": None, "user_id": 2}
    )
    with pytest.raises(InvalidKeyError, match=r"evaluation: .*needs challenge_id"):
        rules.tags_for("evaluation", new={"id": 3, "user_id": 2})


def test_a_null_foreign_key_skips_only_the_relation() -> None:
    """A child without a parent (null key) touches its own tags, not a parent's."""
    rules = Rules().entity("challenge", tags=["challenge:{id}"]).entity("note", tags=["note:{id}"])
    rules.relation("note", "challenge", keys={"id": "challenge_id"})

    assert ("note:1",) == rules.tags_for("note", new={"id": 1, "challenge_id": None})
    assert ("note:1", "challenge:4") == rules.tags_for("note", new={"id": 1, "challenge_id": 4})


def test_relation_with_fields_fires_only_on_them() -> None:
    """A relation limited to some child fields fires only when one of them changed."""
    rules = (
        Rules()
        .entity("challenge", tags=["challenge:{id}"])
        .entity("evaluation", tags=["evaluation:{id}"])
    )
    rules.relation("evaluation", "challenge", keys={"id": "challenge_id"}, fields={"score"})
    old = {"id": 1, "challenge_id": 7, "score": 1, "note": "a"}

    assert ("evaluation:1",) == rules.tags_for("evaluation", old=old, new={"note": "b"})
    assert ("evaluation:1", "challenge:7") == rules.tags_for(
        "evaluation", old=old, new={"score": 2}
    )


def test_tags_from_values_fills_what_it_can(rules: Rules) -> None:
    """The per-type helper's tags: every template the values fill, parents included."""
    assert ("user:5", "leaderboard") == rules.tags_from_values("user", {"id": 5})
    assert ("challenge:7", "user:2:challenges") == rules.tags_from_values(
        "challenge", {"id": 7, "user_id": 2}
    )
    with pytest.raises(
        ConfigurationError, match="no tag of challenge's rules can be filled from title"
    ):
        rules.tags_from_values("challenge", {"title": "x"})


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda r: r.entity("user", tags=["user:{id}"]), "duplicate rule for user"),
        (lambda r: r.entity("user", tags="user:{id}"), "must be a list, not the string"),
        (lambda r: r.entity("user", tags=[]), "at least one tag"),
        (lambda r: r.entity("user", tags=["user:{id.x}"]), "must be a plain name"),
        (lambda r: r.entity("user", tags=["user {id}"]), "' ' at position 4"),
        (lambda r: r.entity("user", tags=["u:{id}"], fields=set()), "at least one field"),
        (lambda r: r.entity("user", tags=["u:{id}"], fields="name"), "not the string 'name'"),
        (lambda r: r.entity("user", tags=["u:{id}"], fields={"na me"}), "must be identifiers"),
        (lambda r: r.entity("bad name", tags=["x"]), "entity type must be a name"),
        (lambda r: r.relation("challenge", "user", keys={}), "keys maps the parent's fields"),
        (
            lambda r: r.relation("evaluation", "challenge", keys={"id": "challenge_id"}),
            "duplicate relation",
        ),
    ],
)
def test_registration_errors_are_clear(rules: Rules, register: Any, message: str) -> None:
    """Bad registrations raise ConfigurationError saying what is wrong."""
    with pytest.raises(ConfigurationError, match=message):
        register(rules)


def test_declared_columns_check_placeholders_and_fields() -> None:
    """With an entity's columns declared, unknown placeholders or fields are refused."""
    rules = Rules().columns("user", {"id", "name", "email"})
    rules.entity("user", tags=["user:{id}"], fields={"name"})

    with pytest.raises(
        ConfigurationError, match="user has no field uid; its fields are email, id, name"
    ):
        rules.entity("user", tags=["user:{uid}"])
    with pytest.raises(ConfigurationError, match="user has no field score"):
        rules.entity("user", tags=["leaderboard"], fields={"score"})
    with pytest.raises(ConfigurationError, match="user has no field owner_id"):
        Rules().entity("user", tags=["o:{owner_id}"]).columns("user", {"id"})


def test_unknown_entity_and_empty_change_are_refused(rules: Rules) -> None:
    """Asking about an unknown type or a change with no values fails clearly."""
    with pytest.raises(
        ConfigurationError,
        match="no rules for entity type 'invoice'; known types: challenge, evaluation, user",
    ):
        rules.tags_for("invoice", new={"id": 1})
    with pytest.raises(ConfigurationError, match="needs new= \\(insert\\), old= \\(delete\\)"):
        rules.tags_for("user")


def test_table_lists_every_rule_and_relation(rules: Rules) -> None:
    """The printed table shows each rule's fields and tags, and each relation."""
    lines = str(rules).splitlines()

    assert ["entity", "on", "change", "of", "touches"] == lines[0].split()
    assert set(lines[1]) == {"-"}
    body = [line.split(None, 1) for line in lines[2:]]
    assert [
        ["challenge", "any field     challenge:{id}, user:{user_id}:challenges"],
        [
            "evaluation",
            "any field     challenge:{challenge_id}:evaluations, user:{user_id}:evaluations, leaderboard",
        ],
        ["evaluation", "any field     -> challenge (id=challenge_id)"],
        ["user", "any field     user:{id}"],
        ["user", "name, score   leaderboard"],
    ] == body


def test_relation_skips_the_parents_type_wide_tags() -> None:
    """A child's change reaches the tags naming its parent, not the parent type's wide tags."""
    rules = (
        Rules()
        .entity("challenge", tags=["challenge:{id}", "challenges"])
        .entity("evaluation", tags=["evaluation:{id}"])
    )
    rules.relation("evaluation", "challenge", keys={"id": "challenge_id"})

    assert ("evaluation:1", "challenge:7") == rules.tags_for(
        "evaluation", new={"id": 1, "challenge_id": 7}
    )
