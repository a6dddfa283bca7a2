"""The bodies the router accepts and the answers it gives, as pydantic models (its OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from freshcache._keys import validate_key, validate_pattern, validate_tag

# Invalidations


class EntitySelector(BaseModel):
    """An entity by type: ``{"type": "user", "id": 5}``, or its ``old``/``new`` values."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    id: int | str | None = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> EntitySelector:
        if self.id is None and self.old is None and self.new is None:
            raise ValueError("an entity needs an id, or its old and/or new values")
        if self.id is not None and (self.old is not None or self.new is not None):
            raise ValueError("give an entity's id, or its old/new values, not both")
        return self


class InvalidateRequest(BaseModel):
    """What to invalidate: any of keys, tags, patterns and one entity; ``confirm`` for everything."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(default_factory=list, max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=10_000)
    patterns: list[str] = Field(default_factory=list, max_length=100)
    entity: EntitySelector | None = None
    confirm: bool = False
    source: str = Field(default="admin-api", min_length=1, max_length=100)

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [validate_key(key) for key in keys]

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return [validate_tag(tag) for tag in tags]

    @model_validator(mode="after")
    def _something_confirmed(self) -> InvalidateRequest:
        if not (self.keys or self.tags or self.patterns or self.entity):
            raise ValueError("select something to invalidate: keys, tags, patterns or an entity")
        for pattern in self.patterns:
            try:
                validate_pattern(pattern, confirm_all=self.confirm)
            except ValueError as exc:
                raise ValueError(f'{exc} (in the API: "confirm": true)') from None
        return self


class InvalidateAnswer(BaseModel):
    tags: list[str]
    keys: list[str]
    patterns: list[str]
    entity_types: list[str]
    key_count: int = Field(description="keys named, plus entries deleted by patterns when known")
    applied: bool = Field(description="false: the backend failed; queued for retry")
    duration_ms: float


class ResetAnswer(BaseModel):
    reset: list[str]


# Metrics


class MetricInfo(BaseModel):
    group: str
    key: str
    kind: str
    help: str
    exposed: str | None
    label: str | None


class MetricsAnswer(BaseModel):
    """Every metric by group, and the founding document's fields at the top level."""

    model_config = ConfigDict(extra="allow")

    scope: Literal["process", "cluster"]
    hit_rate: float
    invalidations_by_entity_type: dict[str, int]
    pattern_invalidations: int
    key_invalidations: int
    failed_invalidations: int
    last_invalidation: dict[str, Any] | None
    outbox_backlog: int | None
    event_lag_seconds: float | None = None
    latency: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cache: dict[str, Any] | None = None
    manager: dict[str, Any] | None = None
    relay: dict[str, Any] | None = None
    events: dict[str, Any] | None = None
    processes: int | None = None


# Health


class Component(BaseModel):
    status: Literal["up", "down", "not configured"]
    reason: str | None = None
    required: bool


class HealthAnswer(BaseModel):
    status: Literal["up", "degraded", "down"]
    components: dict[str, Component]


# Inspector


class Holder(BaseModel):
    token: str
    ttl_seconds: float


class TagAnswer(BaseModel):
    tag: str
    version: str | None
    pending: bool
    holders: list[Holder]
    stored_version: str | None = None
    recent_invalidations: list[dict[str, Any]] = Field(default_factory=list)


class Lease(BaseModel):
    token: str
    ttl_seconds: float | None


class KeyAnswer(BaseModel):
    key: str
    found: bool
    would_hit: bool
    reasons: list[str]
    ttl_seconds: float | None
    size_bytes: int | None
    tags: list[TagAnswer]
    lease: Lease | None


class Problem(BaseModel):
    detail: str
