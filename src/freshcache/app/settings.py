"""The service's settings: environment variables prefixed ``FRESHCACHE_`` (``FRESHCACHE_CACHE_URL``...)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What the reference service runs on; the defaults need no server at all."""

    model_config = SettingsConfigDict(env_prefix="FRESHCACHE_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./.freshcache"), description="Directory of the embedded SQLite database."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database, e.g. postgresql+psycopg://host/db "
        "(default: a SQLite file <data_dir>/freshcache.db).",
    )
    cache_url: str = Field(
        default="memory://",
        description="Cache URL: memory:// (one process), redis://host:port/db, or none "
        "(caching off: a backend that stores nothing).",
    )
    consistency: Literal["strict", "commit"] = Field(
        default="strict",
        description="strict: no read goes backwards around a write; commit: invalidate after the commit only.",
    )
    strict_wait: float = Field(
        default=5.0,
        ge=0.0,
        le=60.0,
        description="strict: how long a write waits in all for an unreachable cache (its marks, "
        "its release) before going on as in commit mode; 0: never wait.",
    )
    admin_token: str | None = Field(
        default=None,
        description="Token (16 characters or more) guarding the admin endpoints; without it they answer 403.",
    )
    events: Literal["memory", "redis"] = Field(
        default="memory",
        description="Transport of the domain events: memory (in-process) or redis (Redis Streams on cache_url).",
    )
    seed: bool = Field(
        default=True, description="Seed a small data set when the database is empty."
    )
    env: Literal["development", "test", "production"] = Field(
        default="development",
        description="production refuses the test hooks (FRESHCACHE_TEST_*) at start-up.",
    )
    test_fill_delay: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="Test hook: delay each cache fill after its load by up to SECONDS (0: off).",
    )
    test_skip_invalidation: bool = Field(
        default=False,
        description="Test hook: writes invalidate nothing, a broken service for checking "
        "freshcache verify (off).",
    )

    @model_validator(mode="after")
    def _no_test_hooks_in_production(self) -> Settings:
        hooks = [
            name
            for name, on in (
                ("FRESHCACHE_TEST_FILL_DELAY", self.test_fill_delay > 0),
                ("FRESHCACHE_TEST_SKIP_INVALIDATION", self.test_skip_invalidation),
            )
            if on
        ]
        if hooks and self.env == "production":
            raise ValueError(
                f"{', '.join(hooks)}: test hooks are refused when FRESHCACHE_ENV=production"
            )
        return self

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'freshcache.db'}"
        return self
