"""How much a run measures, and against which Redis: the full run and the quick one."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

# A user record of about 200 bytes of compact JSON: the payload every hit returns.
PAYLOAD = {
    "id": 4217,
    "email": "ada.lovelace@example.org",
    "name": "Ada Lovelace",
    "score": 9876,
    "active": True,
    "roles": ["author", "reviewer"],
    "created_at": "2024-05-01T12:34:56Z",
    "bio": "Wrote the first program for the Analytical Engine.",
}
PAYLOAD_BYTES = json.dumps(PAYLOAD, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Settings:
    """Counts for one run; ``quick`` only proves the suites work, its numbers mean little."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    namespace: str = "bench"
    quick: bool = False
    rounds: int = 15  # interleaved rounds of every hit benchmark
    redis_ops: int = 2_000  # operations per contestant per round, on Redis
    memory_ops: int = 50_000  # the same in memory, where one operation is ~1 µs
    tag_rounds: int = 9  # refill, then time one invalidation, per size
    tag_sizes: tuple[int, ...] = (1, 1_000, 10_000, 100_000)
    cashews_dependents: int = 10_000
    fill_concurrency: int = 64
    # Entity invalidations through the manager: entities per transaction, concurrent writers,
    # and entities per contestant per round (at least 4 transactions per writer).
    transaction_sizes: tuple[int, ...] = (1, 10, 100)
    writers: tuple[int, ...] = (1, 16)
    manager_entities: int = 3_200
    transactions_per_writer: int = 4
    updates: int = 100  # single-row updates on PostgreSQL per contestant per round
    outbox_rows: int = 20_000  # rows the relay drains, per contestant per round
    relay_rounds: int = 5

    def redis_address(self) -> tuple[str, int]:
        """Host and port of ``redis_url``, for the floors that talk to Redis on a bare socket."""
        url = urlsplit(self.redis_url)
        if url.scheme != "redis" or url.path.strip("/") not in ("", "0") or url.password:
            raise ValueError("the socket floors need a plain redis:// URL on database 0")
        return url.hostname or "127.0.0.1", url.port or 6379

    @classmethod
    def for_run(cls, *, quick: bool, **overrides: object) -> Settings:
        if quick:
            base = cls(
                quick=True,
                rounds=3,
                redis_ops=40,
                memory_ops=400,
                tag_rounds=2,
                tag_sizes=(1, 10, 100),
                cashews_dependents=100,
                manager_entities=160,
                transactions_per_writer=1,
                updates=5,
                outbox_rows=300,
                relay_rounds=2,
            )
        else:
            base = cls()
        given = {name: value for name, value in overrides.items() if value is not None}
        return dataclasses.replace(base, **given)  # type: ignore[arg-type]

    def counted(self) -> Settings:
        """The counts of the run under callgrind: each loop runs once at ``ops`` and ``2 * ops``.

        Instruction counts repeat to within a fraction of a percent at small counts, and
        callgrind runs the client about 50 times slower, so they are far below the timed
        ones. The manager is counted with one writer: its goals in instructions are the
        one-writer ratios (the goals with 16 writers are in invalidations per second).
        It is counted over 8 transactions or more of each size: the difference between
        one transaction of 100 entities and two moved a raw DEL's count per entity by
        half from one process to the next (15.8k-28.5k), where 4 and 8 agreed within 8%.
        """
        quick = self.quick
        return dataclasses.replace(
            self,
            rounds=1,
            redis_ops=10 if quick else 20,
            memory_ops=50 if quick else 200,
            manager_entities=10 if quick else 100,
            transactions_per_writer=1 if quick else 8,
            writers=(1,),
            transaction_sizes=(1, 10) if quick else self.transaction_sizes,
            updates=2 if quick else 4,
        )

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)
