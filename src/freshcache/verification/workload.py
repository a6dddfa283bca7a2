"""The workload: one writer per register, readers on every cached route, over HTTP.

Requests are spread at random over the service URLs. Every answered read becomes one
:class:`Read` per register it shows; every write a :class:`Write`, with no end when its
outcome is unknown (a timeout, a dropped connection, a 5xx). A write refused before it was
sent (the connection was refused) did not happen and is not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from freshcache.cli._failures import Unreachable
from freshcache.verification.history import Read, Write
from freshcache.verification.registers import (
    ROUTES,
    NameRegister,
    Register,
    Registers,
    ScoreRegister,
    TitleRegister,
)

try:
    import httpx2 as httpx
except ImportError:  # Python < 3.11: the same API under its first name
    import httpx  # type: ignore[no-redef, import-not-found, unused-ignore]

PAUSE_AFTER_FAILURE = 0.05
SETUP_ATTEMPTS = 50


class NotSent(Exception):
    """The request never reached the service: a write did not happen."""


class Failed(Exception):
    """The service answered with an error, or stopped answering: a write may have happened."""


@dataclass
class Plan:
    """What to run: how hard, how long, how many registers of each kind."""

    urls: Sequence[str]
    readers: int = 32
    keys: int = 2
    duration: float = 60.0
    operations: int = 100_000
    timeout: float = 5.0
    seed: int = 0


@dataclass
class Tally:
    """Counts kept while the run goes, for the progress display and the report."""

    operations: int = 0
    reads: int = 0
    failed_reads: int = 0
    writes: int = 0
    unknown_writes: int = 0
    unsent_writes: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class History:
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    seconds: float = 0.0
    keys: int = 0
    # time.monotonic_ns() when the run began (drive's start unless set before it): the
    # origin of the report's timeline, shared with the faults
    began_ns: int = 0


class Client:
    """One HTTP client over every URL: JSON in and out, each failure one of two kinds."""

    def __init__(self, urls: Sequence[str], timeout: float, connections: int, seed: int) -> None:
        self.urls = list(urls)
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=connections)
        )

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.rng.choice(self.urls) + path
        try:
            answer = await self.http.request(method, url, json=body)
        except httpx.ConnectError as exc:
            raise NotSent(f"connect: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise Failed(type(exc).__name__) from None
        if answer.status_code >= 300:
            raise Failed(f"HTTP {answer.status_code}")
        return None if answer.status_code == 204 else answer.json()

    async def aclose(self) -> None:
        await self.http.aclose()


class Run:
    """One run of the workload: ``setup``, ``drive``, then ``teardown``."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.label = f"verify-{secrets.token_hex(4)}"
        self.client = Client(plan.urls, plan.timeout, plan.readers + 3 * plan.keys + 4, plan.seed)
        self.history = History()
        self.registers = Registers([], [], [])
        self.created = 0
        self.users: list[int] = []
        self._stop = asyncio.Event()

    @property
    def stopped(self) -> asyncio.Event:
        return self._stop

    async def _create(self, kind: Any) -> Any:
        """A new register of ``kind``, retried through faults."""
        last = ""
        for _ in range(SETUP_ATTEMPTS):
            self.created += 1
            try:
                register = await kind.create(self.client, f"{self.label}-{self.created}")
            except (NotSent, Failed) as exc:
                last = str(exc)
                await asyncio.sleep(PAUSE_AFTER_FAILURE * 4)
                continue
            self.users.extend(register.users())
            return register
        raise Unreachable(f"could not create the verify data on {self.plan.urls}: {last}")

    async def setup(self) -> None:
        for _ in range(self.plan.keys):
            self.registers.names.append(await self._create(NameRegister))
            self.registers.titles.append(await self._create(TitleRegister))
            self.registers.scores.append(await self._create(ScoreRegister))

    def _take(self, deadline: float) -> bool:
        """Whether one more operation fits in the run's bounds."""
        if self._stop.is_set():
            return False
        if self.history.tally.operations >= self.plan.operations or time.monotonic() > deadline:
            self._stop.set()
            return False
        self.history.tally.operations += 1
        return True

    async def drive(self) -> None:
        if not self.history.began_ns:
            self.history.began_ns = time.monotonic_ns()
        began = self.history.began_ns / 1e9
        deadline = began + self.plan.duration
        writers = [
            self._write(self.registers.names, n, deadline) for n in range(self.plan.keys)
        ] + [self._write(self.registers.titles, n, deadline) for n in range(self.plan.keys)]
        writers += [self._write(self.registers.scores, n, deadline) for n in range(self.plan.keys)]
        readers = [self._read(n, deadline) for n in range(self.plan.readers)]
        await asyncio.gather(*writers, *readers)
        self.history.seconds = time.monotonic() - began

    async def _write(self, slots: list[Any], slot: int, deadline: float) -> None:
        tally = self.history.tally
        while self._take(deadline):
            register: Register = slots[slot]
            if isinstance(register, ScoreRegister) and register.full:
                slots[slot] = await self._create(ScoreRegister)
                continue
            value = register.value + 1
            register.value = value
            start = time.monotonic_ns()
            try:
                await register.write(self.client, value)
            except NotSent as exc:
                tally.unsent_writes += 1
                tally.errors[f"write {exc}"] += 1
            except Failed as exc:
                tally.unknown_writes += 1
                tally.errors[f"write {exc}"] += 1
                self.history.writes.append(Write(register.key, start, None, value))
            else:
                tally.writes += 1
                self.history.writes.append(Write(register.key, start, time.monotonic_ns(), value))
                continue
            await asyncio.sleep(PAUSE_AFTER_FAILURE)

    async def _read(self, reader: int, deadline: float) -> None:
        rng = random.Random(self.plan.seed * 1000 + reader)
        while self._take(deadline):
            if not await self.read_once(rng.choice(ROUTES), rng):
                await asyncio.sleep(PAUSE_AFTER_FAILURE)

    async def read_once(self, route: str, rng: random.Random) -> bool:
        tally = self.history.tally
        start = time.monotonic_ns()
        try:
            shown = await self.registers.read(self.client, route, rng)
        except (NotSent, Failed) as exc:
            tally.failed_reads += 1
            tally.errors[f"read {exc}"] += 1
            return False
        end = time.monotonic_ns()
        tally.reads += 1
        tally.routes[route] += 1
        self.history.reads.extend(Read(key, start, end, value, route) for key, value in shown)
        return True

    async def settle(self, rounds: int = 3) -> None:
        """Once writers and faults stopped: every route of every register, read again."""
        rng = random.Random(self.plan.seed)
        for _ in range(rounds):
            for route in ROUTES:
                for _ in range(self.plan.keys * len(self.plan.urls)):
                    await self.read_once(route, rng)

    async def teardown(self) -> None:
        """Deletes the users the run created (their challenges and evaluations cascade)."""
        keys: set[str] = {r.key for r in self.registers.names}
        keys |= {r.key for r in self.registers.titles}
        self.history.keys = len(keys | {w.key for w in self.history.writes})
        for user_id in self.users:
            with contextlib.suppress(NotSent, Failed):
                await self.client.request("DELETE", f"/api/users/{user_id}")
        await self.client.aclose()
