"""Request and response bodies: unknown fields and out-of-range values are refused with a 422 naming them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import Self

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Score = Annotated[int, Field(ge=0, le=100)]
Difficulty = Literal["easy", "medium", "hard"]
Status = Literal["open", "in_progress", "done"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Fields a PATCH may set to null; any other sent as null is refused, naming it.
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null(self) -> Self:
        for name in sorted(self.model_fields_set - self.nullable):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class UserCreate(Input):
    nullable = frozenset({"focus_area"})
    email: Email
    name: Name
    focus_area: Name | None = None


class UserUpdate(Input):
    nullable = frozenset({"focus_area", "last_seen_at"})
    email: Email | None = None
    name: Name | None = None
    focus_area: Name | None = None
    last_seen_at: datetime | None = None


class ChallengeCreate(Input):
    user_id: Id
    title: Title
    content: Text = ""
    difficulty: Difficulty = "medium"
    status: Status = "open"


class ChallengeUpdate(Input):
    user_id: Id | None = None
    title: Title | None = None
    content: Text | None = None
    difficulty: Difficulty | None = None
    status: Status | None = None


class EvaluationCreate(Input):
    nullable = frozenset({"user_id"})
    score: Score
    feedback: Text = ""
    user_id: Id | None = Field(
        None, description="Whose progress it counts for (default: the challenge's user)."
    )


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(Output):
    id: int
    email: str
    name: str
    focus_area: str | None
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChallengeOut(Output):
    id: int
    user_id: int
    title: str
    content: str
    difficulty: str
    status: str
    created_at: datetime
    updated_at: datetime


class EvaluationOut(Output):
    id: int
    challenge_id: int
    user_id: int
    score: int
    feedback: str
    created_at: datetime


class ProgressOut(BaseModel):
    user_id: int
    evaluations: int
    average_score: float | None
    best_score: int | None


class LeaderboardRow(BaseModel):
    rank: int
    user_id: int
    name: str
    evaluations: int
    average_score: float
