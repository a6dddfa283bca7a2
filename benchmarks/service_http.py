"""The reference service over HTTP, measured by wrk from another process: cache on and off, and the framework's floor.

    uv run python -m benchmarks.service_http            # 10,000 users, 50,000 challenges, 200,000 evaluations
    uv run python -m benchmarks.service_http --quick    # a small data set and 1 s per figure: proves it runs

On PostgreSQL (a database of its own, ``freshcache_bench``, created if missing) and Redis
(a namespace of its own), with a data set from ``freshcache seed``. Each server is the same
uvicorn command (one worker, no access log) on a free port: the service with
``FRESHCACHE_CACHE_URL`` on Redis, the same with ``none``, and a bare FastAPI route that
returns a constant of the size of a user (the floor). wrk (``apt-get install wrk``) asks
for random ids through a Lua script. Results in benchmarks/results/service_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "service_http.json"
FULL = {"users": 10_000, "challenges": 50_000, "evaluations": 200_000}
QUICK = {"users": 200, "challenges": 1_000, "evaluations": 4_000}
# One command for every server: only the app it imports differs.
SERVER = [
    "-m",
    "uvicorn",
    "--factory",
    "--workers",
    "1",
    "--log-level",
    "warning",
    "--no-access-log",
]
ROUTES = {  # name: (path with {id} for a random user id, the goal of cache on over off)
    "user by id": ("/api/users/{id}", 2.0),
    "progress": ("/api/users/{id}/progress", 5.0),
    "leaderboard": ("/api/leaderboard", 20.0),
}
FLOOR_GOAL = 0.6  # the cached by-id route against the bare route
FLOORS = {  # figure: the app wrk asks for /api/users/{id}
    "bare route": "benchmarks.service_floor:app",
    "bare route + one Redis GET": "benchmarks.service_floor:app_with_redis",
    "bare route + one freshcache hit": "benchmarks.service_floor:app_with_cache",
}
LUA = """
local lowest, highest = {lowest}, {highest}
local template = "{template}"
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function(args) math.randomseed(os.time() * 1000 + seed) end
request = function()
  local path = string.gsub(template, "{{id}}", tostring(math.random(lowest, highest)))
  return wrk.format("GET", path)
end
"""


def free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port: int = free.getsockname()[1]
    return port


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        body: bytes = answer.read()
        return body


@contextmanager
def server(factory: str, env: dict[str, str]) -> Iterator[str]:
    """A uvicorn process serving ``factory``; its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *SERVER, "--port", str(port), factory],
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get(base + "/openapi.json")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server {factory} did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, template: str, ids: range, seconds: float, connections: int) -> dict[str, Any]:
    """Requests per second of GET ``template`` with random ids from ``ids``, and any non-2xx answers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(lowest=ids.start, highest=ids.stop - 1, template=template))
    try:
        run = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", run.stdout)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{run.stdout}{run.stderr}")
    return {"rps": float(rate.group(1)), "non_2xx": int(errors.group(1)) if errors else 0}


def warm(base: str, template: str, ids: range) -> None:
    """Read ``template`` for every id once: the cache is full before it is measured."""
    paths = {template.format(id=i) for i in ids}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda path: get(base + path), paths))


def load_data_set(database_url: str, cache_url: str, sizes: dict[str, int]) -> range:
    """The data set of ``sizes`` in the database (loaded unless it is there already); its user ids."""
    from sqlalchemy import create_engine, text

    from freshcache.app.seed import Sizes
    from freshcache.app.settings import Settings
    from freshcache.cli.seed import load, progress_bars

    admin_url = database_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    name = database_url.rsplit("/", 1)[1]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.scalar(text("select 1 from pg_database where datname = :n"), {"n": name}):
            connection.execute(text(f'create database "{name}"'))
    admin.dispose()
    settings = Settings(database_url=database_url, cache_url=cache_url, seed=False)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            held = {
                table: connection.scalar(text(f"select count(*) from {table}")) for table in sizes
            }
    except Exception:
        held = {}
    if held != sizes:
        started = time.perf_counter()
        with progress_bars() as on_progress:
            asyncio.run(load(settings, Sizes(**sizes), existing="reset", on_progress=on_progress))
        print(f"loaded {sum(sizes.values()):,} rows in {time.perf_counter() - started:.1f} s")
    with engine.connect() as connection:
        lowest, highest = connection.execute(text("select min(id), max(id) from users")).one()
    engine.dispose()
    return range(lowest, highest + 1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    seconds = 1 if args.quick else args.seconds
    runs = 1 if args.quick else args.runs
    cache_url = f"{args.redis_url}?namespace={args.namespace}"
    ids = load_data_set(args.database_url, cache_url, sizes)
    if args.ids:  # the first ids only: a warm-up that ends well within the cache's TTL
        ids = range(ids.start, min(ids.stop, ids.start + args.ids))
    service = {"FRESHCACHE_DATABASE_URL": args.database_url, "FRESHCACHE_SEED": "false"}
    modes = {
        "on": ("freshcache.cli.serve:app_from_env", {**service, "FRESHCACHE_CACHE_URL": cache_url}),
        "off": ("freshcache.cli.serve:app_from_env", {**service, "FRESHCACHE_CACHE_URL": "none"}),
    }
    load_start = os.getloadavg()
    figures: list[dict[str, Any]] = []
    for run in range(runs):
        figure: dict[str, Any] = {}
        for mode, (factory, env) in modes.items():
            with server(factory, env) as base:
                for name, (template, _) in ROUTES.items():
                    if mode == "on":  # just before, so that no entry has reached its TTL
                        warm(base, template, ids)
                    figure[f"{name}, cache {mode}"] = wrk(
                        base + template.format(id=ids.start),
                        template,
                        ids,
                        seconds,
                        args.connections,
                    )
                    if mode == "on" and name == "user by id":
                        body = get(base + template.format(id=ids.start))
        floor_env = {
            "FRESHCACHE_FLOOR_BODY": body.decode(),
            "FRESHCACHE_FLOOR_REDIS_URL": args.redis_url,
        }
        for floor, factory in FLOORS.items():
            with server(factory, floor_env) as base:
                figure[floor] = wrk(
                    base + "/api/users/1", "/api/users/{id}", ids, seconds, args.connections
                )
        figures.append(figure)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v['rps']:,.0f}/s" for k, v in figure.items()))
    return {
        "sizes": sizes,
        "ids": [ids.start, ids.stop - 1],
        "seconds": seconds,
        "connections": args.connections,
        "runs": figures,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "user_body_bytes": len(body),
        "cpus": os.cpu_count(),
        "server": " ".join(["python", *SERVER]),
    }


def table(result: dict[str, Any]) -> str:
    """The Markdown table: the median over runs, the spread (lowest to highest) beside it."""

    def rates(name: str) -> list[float]:
        return [run[name]["rps"] for run in result["runs"]]

    def spread(name: str) -> str:
        values = rates(name)
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    lines = [
        "| route | cache off, req/s | cache on, req/s | on / off | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, (_, goal) in ROUTES.items():
        ratios = [
            on / off
            for on, off in zip(rates(f"{name}, cache on"), rates(f"{name}, cache off"), strict=True)
        ]
        ratio = f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"
        met = (
            "met" if min(ratios) >= goal else "missed" if max(ratios) < goal else "met in some runs"
        )
        lines.append(
            f"| `GET {ROUTES[name][0]}` | {spread(f'{name}, cache off')} | "
            f"{spread(f'{name}, cache on')} | {ratio} | {goal:g}x: {met} |"
        )
    floors = [
        on / bare
        for on, bare in zip(rates("user by id, cache on"), rates("bare route"), strict=True)
    ]
    met = (
        "met"
        if min(floors) >= FLOOR_GOAL
        else "missed"
        if max(floors) < FLOOR_GOAL
        else "met in some runs"
    )
    lines.append(
        f"| bare FastAPI route, constant of {result['user_body_bytes']} bytes | | "
        f"{spread('bare route')} | by id cached / bare: {statistics.median(floors):.2f}x "
        f"({min(floors):.2f}-{max(floors):.2f}) | {FLOOR_GOAL}x: {met} |"
    )
    described = {  # the floors with Redis in them, as the table names them
        "bare route + one Redis GET": "the same, read from Redis by one raw redis-py GET",
        "bare route + one freshcache hit": "the same, one freshcache AsyncCache.get hit (1 tag)",
    }
    for floor, description in described.items():
        if not all(floor in run for run in result["runs"]):
            continue  # runs saved before this floor was measured

        def ratio(name: str, to: str) -> str:
            values = [a / b for a, b in zip(rates(name), rates(to), strict=True)]
            return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

        lines.append(
            f"| {description} | | {spread(floor)} | this floor / bare: "
            f"{ratio(floor, 'bare route')}; by id cached / this floor: "
            f"{ratio('user by id, cache on', floor)}; this floor / leaderboard off: "
            f"{ratio(floor, 'leaderboard, cache off')} | |"
        )
    errors = sum(value["non_2xx"] for run in result["runs"] for value in run.values())
    start, end = result["load_average_start"], result["load_average_end"]
    lines += [
        "",
        f"runs: {len(result['runs'])}, each {result['seconds']} s per figure, wrk -t1 "
        f"-c{result['connections']}, {result['cpus']} CPUs; median (lowest-highest); "
        f"non-2xx answers: {errors}; load average (1, 5, 15 min) "
        f"{start[0]:.1f}, {start[1]:.1f}, {start[2]:.1f} at start and "
        f"{end[0]:.1f}, {end[1]:.1f}, {end[2]:.1f} at end.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="A small data set, 1 s per figure, one run."
    )
    parser.add_argument("--runs", type=int, default=2, help="Whole runs, for the spread.")
    parser.add_argument("--seconds", type=int, default=10, help="wrk's duration per figure.")
    parser.add_argument("--connections", type=int, default=32, help="wrk's open connections.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FRESHCACHE_BENCH_DATABASE_URL",
            "postgresql+psycopg://postgres@127.0.0.1:5432/freshcache_bench",
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("FRESHCACHE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--namespace", default="bench-service-http")
    parser.add_argument(
        "--ids",
        type=int,
        default=0,
        help="Ask for the first N user ids only (default: all): on a loaded machine, warming "
        "10,000 ids can outlast the cache's 300 s TTL, and the figures then count misses.",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks.service_http needs wrk: apt-get install wrk")
    if args.quick:
        args.database_url = args.database_url.rsplit("/", 1)[0] + "/freshcache_bench_quick"
    result = measure(args)
    if not args.quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
