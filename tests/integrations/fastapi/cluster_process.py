"""One process of a service for the cluster-totals test: traffic, then its own counters as JSON.

Run as ``python -m tests.integrations.fastapi.cluster_process URL ROUNDS``; the router's
lifespan sends the counter deltas every 50 ms while the traffic runs, and once more at exit.
"""

from __future__ import annotations

import json
import sys

from fastapi.testclient import TestClient

from freshcache import Cache, InvalidationManager
from freshcache.integrations.fastapi import MonitoringSettings
from freshcache.integrations.fastapi.snapshot import counters
from freshcache.integrations.fastapi.sources import Sources

from .apps import TOKEN, app_with, rules


def main(url: str, rounds: int) -> None:
    cache = Cache.from_url(url)
    manager = InvalidationManager(cache, rules())
    settings = MonitoringSettings(admin_token=TOKEN, cluster_interval=0.05)
    with TestClient(app_with(cache=cache, manager=manager, settings=settings)):
        for number in range(rounds):
            cache.get_or_load(f"user:{number % 3}", lambda n=number: n, tags=[f"user:{number % 3}"])
            if number % 4 == 0:
                manager.invalidate_entity("user", old={"id": number % 3})
            if number % 7 == 0:
                manager.invalidate_entity("post", new={"id": number})
    own = counters(Sources.checked(cache, manager, None, None))
    cache.close()
    print(json.dumps(own))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
