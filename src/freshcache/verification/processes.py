"""Servers the verify command starts itself: a private redis-server and service processes.

Each is a child process on a free loopback port that a fault may kill (SIGKILL), pause
(SIGSTOP, then SIGCONT) and start again on the same port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

from freshcache._exceptions import ConfigurationError
from freshcache.cli._failures import Unreachable

START_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if process.poll() is not None:
                raise Unreachable(f"{what} exited with status {process.returncode}") from None
            if time.monotonic() > deadline:
                raise Unreachable(f"{what} did not listen within {START_TIMEOUT:.0f} s") from None
            await asyncio.sleep(0.1)


class Child(ABC):
    """A child process that can be killed, paused and started again on its port."""

    name = "process"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that starts this child on its port."""

    def environment(self) -> dict[str, str] | None:
        return None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def start(self) -> None:
        self.starts += 1
        self.process = self._spawn()
        await _wait_for_port(self.port, self.process, f"{self.name} on port {self.port}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Quick (a fork and an exec), so it runs on the loop; the wait for the port does not.
        with open(self.directory / f"{self.name}-{self.port}.log", "ab") as log:
            return subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment()
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / f"{self.name}-{self.port}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class RedisChild(Child):
    """A redis-server that keeps nothing on disk: a restart loses every entry and version."""

    name = "redis-server"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        executable = shutil.which("redis-server")
        if executable is None:
            raise ConfigurationError(
                "--spawn without --cache-url starts a redis-server, and none is installed"
            )
        self.executable = executable

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"]  # fmt: skip


class ServiceChild(Child):
    """``freshcache serve`` on ``settings`` (FRESHCACHE_* variables), no seeding."""

    name = "service"

    def __init__(self, directory: Path, settings: dict[str, str]) -> None:
        super().__init__(directory)
        self.settings = settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "freshcache.cli", "serve", "--port", str(self.port), "--no-seed", "--no-access-log"]  # fmt: skip

    def environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
        return {**inherited, **self.settings}


class Children:
    """Every child of one run, and the directory of their logs; ``close`` kills them all."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="freshcache-verify-")
        self.directory = Path(self._directory.name)
        self.redis: RedisChild | None = None
        self.services: list[ServiceChild] = []

    async def start_redis(self) -> RedisChild:
        self.redis = RedisChild(self.directory)
        await self.redis.start()
        return self.redis

    async def start_services(self, count: int, settings: dict[str, str]) -> list[ServiceChild]:
        """The first alone (it creates the tables), then the others together."""
        self.services = [ServiceChild(self.directory, settings) for _ in range(count)]
        try:
            await self.services[0].start()
            await asyncio.gather(*(service.start() for service in self.services[1:]))
        except Unreachable as exc:
            tails = "\n".join(s.log_tail() for s in self.services if s.log_tail())
            raise Unreachable(f"{exc}; its log ends:\n{tails}") from None
        return self.services

    def close(self) -> None:
        for child in [*self.services, *([self.redis] if self.redis else [])]:
            child.resume()
            child.kill()
        self._directory.cleanup()
