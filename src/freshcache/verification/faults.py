"""Faults injected while the workload runs, one at a time, a few seconds apart.

A fault is applied to what the command started itself (its redis-server, its service
processes) or through the commands the user named (``--redis-restart-cmd``,
``--restart-cmd``, ``--redis-pid``). Fills are delayed by the service's own test hook
(``FRESHCACHE_TEST_FILL_DELAY``), set on the services the command starts.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from freshcache.verification.processes import Children

PAUSE_SECONDS = (0.3, 1.5)
DOWN_SECONDS = (0.1, 1.0)


@dataclass
class FaultLog:
    """What was injected and when (seconds since the run began), and what failed to be."""

    injected: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, name in self.injected:
            counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass
class Faults:
    """The faults this run can inject; ``run`` injects them until ``stop`` is set."""

    children: Children | None = None
    redis_restart_cmd: str | None = None
    redis_pid: int | None = None
    restart_cmd: str | None = None
    interval: float = 3.0
    seed: int = 0
    log: FaultLog = field(default_factory=FaultLog)

    def available(self) -> dict[str, Callable[[random.Random], Awaitable[None]]]:
        faults: dict[str, Callable[[random.Random], Awaitable[None]]] = {}
        redis = self.children.redis if self.children else None
        if redis is not None or self.redis_restart_cmd:
            faults["redis restart"] = self._restart_redis
        if redis is not None or self.redis_pid:
            faults["redis pause"] = self._pause_redis
        if (self.children and self.children.services) or self.restart_cmd:
            faults["service kill"] = self._kill_service
        return faults

    async def run(self, stop: asyncio.Event, began: float) -> None:
        faults = self.available()
        if not faults:
            return
        rng = random.Random(self.seed)
        names = sorted(faults)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 1.5) * self.interval)
                return
            except asyncio.TimeoutError:
                pass
            name = rng.choice(names)
            self.log.injected.append((time.monotonic() - began, name))
            try:
                await faults[name](rng)
            except Exception as exc:
                self.log.errors.append(f"{name}: {exc}")

    async def _restart_redis(self, rng: random.Random) -> None:
        if self.redis_restart_cmd:
            await _shell(self.redis_restart_cmd)
            return
        assert self.children is not None
        assert self.children.redis is not None
        self.children.redis.kill()
        await asyncio.sleep(rng.uniform(*DOWN_SECONDS))
        await self.children.redis.start()

    async def _pause_redis(self, rng: random.Random) -> None:
        redis = self.children.redis if self.children else None
        pid = redis.pid if redis is not None else self.redis_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(rng.uniform(*PAUSE_SECONDS))
        finally:
            os.kill(pid, signal.SIGCONT)

    async def _kill_service(self, rng: random.Random) -> None:
        if self.restart_cmd:
            await _shell(self.restart_cmd)
            return
        assert self.children is not None
        service = rng.choice(self.children.services)
        service.kill()
        await asyncio.sleep(rng.uniform(*DOWN_SECONDS))
        await service.start()


async def _shell(command: str) -> None:
    process = await asyncio.create_subprocess_shell(command)
    status = await process.wait()
    if status != 0:
        raise RuntimeError(f"{command!r} exited with status {status}")
