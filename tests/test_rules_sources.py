"""Derived and written rules merge in any order, and a repository reads only tags some rule writes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import JSON, ForeignKey, MetaData, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from freshcache import (
    Cache,
    ConfigurationError,
    InvalidationManager,
    InvalidEntityError,
    InvalidKeyError,
    Rules,
)
from freshcache.integrations.sqlalchemy import (
    BaseRepository,
    SessionInvalidation,
    rules_from_models,
)

from .integrations.models import MODELS, Challenge, Evaluation, User

CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("user", {"new": {"id": 5, "email": "a@x", "name": "Ada", "score": 1}}),
    ("user", {"old": {"id": 5, "score": 1}, "new": {"score": 2}}),
    ("user", {"old": {"id": 5, "name": "Ada"}, "new": {"name": "Grace"}}),
    ("challenge", {"new": {"id": 7, "user_id": 5, "title": "t"}}),
    ("challenge", {"old": {"id": 7, "user_id": 5, "title": "t"}, "new": {"user_id": 6}}),
    ("evaluation", {"old": {"id": 9, "challenge_id": 7, "user_id": 5, "score": 3}}),
]


def own_rules(rules: Rules) -> Rules:
    return (
        rules.entity("user", tags=["leaderboard"], fields={"score"})
        .entity("challenge", tags=["challenge:{id}"])
        .relation("evaluation", "user", keys={"id": "user_id"}, fields={"score"})
    )


def tags_of(rules: Rules) -> list[tuple[str, ...]]:
    return [tuple(sorted(rules.tags_for(kind, **change))) for kind, change in CHANGES]


def test_derived_rules_merge_before_or_after_your_own() -> None:
    """rules_from_models before or after the application's rules gives the same tags for every change."""
    before = own_rules(rules_from_models(MODELS))
    after = rules_from_models(MODELS, own_rules(Rules()))
    assert tags_of(before) == tags_of(after)
    assert "user:5" in after.tags_for("user", new={"id": 5, "email": "a", "name": "A", "score": 0})
    assert {"challenge:7", "challenge", "user:5:challenges"} <= set(
        after.tags_for("challenge", new={"id": 7, "user_id": 5, "title": "t"})
    )


def test_a_rule_both_written_and_derived_is_one_rule() -> None:
    """Writing a rule rules_from_models derives too is no duplicate, in either order; writing it twice is."""
    derived_first = rules_from_models(MODELS).entity("user", tags=["user:{id}", "user"])
    written_first = rules_from_models(MODELS, Rules().entity("user", tags=["user:{id}", "user"]))
    assert 1 == len(derived_first.rules_for("user")) == len(written_first.rules_for("user"))
    assert 1 == len(rules_from_models(MODELS, rules_from_models(MODELS)).rules_for("user"))
    with pytest.raises(ConfigurationError, match="duplicate rule for user"):
        derived_first.entity("user", tags=["user", "user:{id}"])
    with pytest.raises(ConfigurationError, match="duplicate rule for user"):
        written_first.entity("user", tags=["user:{id}", "user"])


def test_written_rules_are_checked_against_the_models_columns() -> None:
    """A written rule naming a field the model does not have is refused, whether it came first or last."""
    with pytest.raises(ConfigurationError, match="user has no field nickname"):
        rules_from_models(MODELS, Rules().entity("user", tags=["user:{nickname}"]))
    with pytest.raises(ConfigurationError, match="user has no field nickname"):
        rules_from_models(MODELS).entity("user", tags=["user:{nickname}"])
    with pytest.raises(ConfigurationError, match="columns of user are declared twice"):
        rules_from_models(MODELS, Rules().columns("user", ["id", "name"]))


def test_list_tags_are_derived_for_parents_not_given() -> None:
    """rules_from_models of the children alone still touches each parent's list, the tag a repository reads."""
    rules = rules_from_models([Challenge, Evaluation])
    tags = rules.tags_for("challenge", new={"id": 7, "user_id": 5, "title": "t"})
    assert "user:5:challenges" in tags
    assert {"challenge:7:evaluations", "user:5:evaluations"} <= set(
        rules.tags_for("evaluation", new={"id": 1, "challenge_id": 7, "user_id": 5, "score": 0})
    )


class Users(BaseRepository[User]):
    model = User


class Challenges(BaseRepository[Challenge]):
    model = Challenge


def hooked_sessions(rules: Rules) -> sessionmaker[Any]:
    sessions = sessionmaker(create_engine("sqlite://"))
    SessionInvalidation(InvalidationManager(Cache.from_url("memory://"), rules)).install(sessions)
    return sessions


@pytest.mark.parametrize(
    ("rules", "repository", "tag"),
    [
        (rules_from_models([Challenge]), Users, "'user:{id}'"),
        (Rules().entity("challenge", tags=["challenge:{id}", "challenge"]), Challenges,
         "'user:{user_id}:challenges'"),
        (Rules().entity("challenge", tags=["challenge:{id}", "user:{user_id}:challenges"]),
         Challenges, "'challenge'"),
        (Rules().entity("challenge", tags=["challenge:{id}", "challenge"])
         .entity("challenge", tags=["user:{user_id}:challenges"], fields={"user_id"}),
         Challenges, "'user:{user_id}:challenges'"),
    ],
)  # fmt: skip
def test_a_repository_reading_a_tag_no_rule_writes_is_refused(
    rules: Rules, repository: Any, tag: str
) -> None:
    """A repository whose tag no rule of its sessions' hooks touches on every change fails at construction, naming the tag and the fix."""
    sessions = hooked_sessions(rules)
    with pytest.raises(ConfigurationError, match=rf"under the tag {tag}.*rules_from_models"):
        repository(sessions, Cache.from_url("memory://"))
    with pytest.raises(ConfigurationError, match=rf"under the tag {tag}"):
        repository(sessionmaker(), Cache.from_url("memory://"), rules=rules)


def test_a_repository_on_matching_rules_is_built() -> None:
    """Derived rules, given the repository's model (or its rules written by hand), satisfy it."""
    Challenges(hooked_sessions(rules_from_models([Challenge])), Cache.from_url("memory://"))
    written = Rules().entity("challenge", tags=["challenge:{id}", "challenge"])
    written.entity("challenge", tags=["user:{user_id}:challenges"])
    Challenges(hooked_sessions(written), Cache.from_url("memory://"))
    Users(sessionmaker(), Cache.from_url("memory://"))  # no writer known: nothing to check against


def test_an_id_given_as_text_takes_its_columns_type() -> None:
    """An id given as text formats like the column's value, and text that is not one is refused before any I/O."""
    users = Users(sessionmaker(), Cache.from_url("memory://"))
    assert "user:5" == users.tag_for("5") == users.tag_for(5)
    with pytest.raises(
        InvalidEntityError, match=r"user\.id holds int values, and 'five' is not one"
    ):
        users.get("five")


class OtherBase(DeclarativeBase):
    metadata = MetaData()


class Setting(OtherBase):
    __tablename__ = "settings"
    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


def test_a_placeholder_on_a_column_no_tag_can_hold_is_refused_at_start() -> None:
    """A written rule formatting a JSON column is refused when rules meet the model, in either order, not at a commit."""
    with pytest.raises(
        ConfigurationError, match=r"'setting:\{data\}' formats data, a field of type object"
    ):
        rules_from_models([Setting], Rules().entity("setting", tags=["setting:{data}"]))
    with pytest.raises(
        ConfigurationError, match=r"'setting:\{data\}' formats data, a field of type object"
    ):
        rules_from_models([Setting]).entity("setting", tags=["setting:{data}"])


class Device(OtherBase):
    __tablename__ = "devices"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    setting_id: Mapped[int | None] = mapped_column(ForeignKey("settings.id"))


def test_values_given_as_text_format_as_their_fields_type() -> None:
    """Rules with the models' types format a UUID or an int given as text as the hooks' values."""
    rules = rules_from_models([Setting, Device])
    key = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    typed = rules.tags_for("device", old={"id": key, "setting_id": 5})
    assert typed == rules.tags_for("device", old={"id": str(key).upper(), "setting_id": "5"})
    assert f"device:{key}" in typed
    with pytest.raises(
        InvalidKeyError, match=r"device\.id holds UUID values, and 'abc' is not one"
    ):
        rules.tags_for("device", old={"id": "abc", "setting_id": None})
