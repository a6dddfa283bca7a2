"""The dashboard in headless Chromium (Debian's chromium and chromedriver, driven by Selenium).

Set FRESHCACHE_DASHBOARD_SCREENSHOT=docs/dashboard.png to refresh the README's picture.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from freshcache import Cache, ConsistencyMonitor, InvalidationManager

from ...settings import REQUIRE_SERVICES
from .apps import TOKEN, app_with, rules

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_problem() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(Path(path).name)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def served() -> Iterator[tuple[str, Cache, InvalidationManager]]:
    """The router on a sync cache and manager, served by uvicorn on a free loopback port."""
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, rules())
    ConsistencyMonitor(cache, rate=1.0, delay=3600)  # checked when the test drains it
    for user in (5, 6):
        cache.get_or_load(f"user:{user}:profile", lambda u=user: {"id": u}, tags=[f"user:{user}"])
    for _ in range(14):  # enough reads for the sampled read latency (one in 16) to show
        cache.get("user:5:profile")
        cache.get("user:6:profile")
    manager.invalidate_entity("post", new={"id": 1})
    # Bound before the server starts: the browser's first request waits in the backlog.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app_with(cache=cache, manager=manager), log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", cache, manager
    server.should_exit = True
    thread.join(10)
    listener.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    problem = _browser_problem()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}, and FRESHCACHE_REQUIRE_SERVICES=1")
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1400,1150",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_dashboard_shows_live_numbers_invalidates_and_explains(
    served: tuple[str, Cache, InvalidationManager], browser: Any, tmp_path: Path
) -> None:
    """Charts draw the live hit rate; a form invalidation shows in counters and log; the inspector explains the stale key; the consistency panel reports the monitor's check of it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    base, cache, _ = served
    wait = WebDriverWait(browser, 15)
    browser.get(base + "/dashboard")

    # Live numbers: 28 hits over 30 reads, drawn as a line and printed.
    wait.until(until.text_to_be_present_in_element((By.ID, "hit-rate-value"), "93.3 %"))
    assert browser.find_elements(By.CSS_SELECTOR, "#hit-rate-chart svg path.series")
    assert browser.find_elements(By.CSS_SELECTOR, "#entity-chart svg rect.bar")
    assert browser.find_elements(By.CSS_SELECTOR, "#latency-chart svg rect.bar")
    hits = browser.find_element(By.ID, "counter-cache-hits")
    assert hits.text.endswith("28")

    # An invalidation sent from the form.
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    form = browser.find_element(By.ID, "invalidate-form")
    form.find_element(By.NAME, "entity_type").send_keys("user")
    form.find_element(By.NAME, "entity_id").send_keys("5")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(
        until.text_to_be_present_in_element((By.ID, "invalidate-result"), "invalidated 2 tag(s)")
    )
    wait.until(
        until.text_to_be_present_in_element((By.ID, "counter-manager-entity_invalidations"), "2")
    )
    wait.until(until.text_to_be_present_in_element((By.CSS_SELECTOR, "#recent tbody"), "user:5"))
    first_row = browser.find_element(By.CSS_SELECTOR, "#recent tbody tr").text
    assert "admin-api" in first_row
    assert "users" in first_row

    # The inspector explains the key made stale by that invalidation.
    box = browser.find_element(By.ID, "inspect-form")
    box.find_element(By.NAME, "key").send_keys("user:5:profile")
    box.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(until.text_to_be_present_in_element((By.ID, "inspect-result"), "would miss"))
    explanation = browser.find_element(By.ID, "inspect-result").text
    assert "tag 'user:5' has no version now" in explanation
    assert cache.get("user:5:profile") is None

    # The consistency monitor checked that invalidation of user:5 (users had no version).
    assert cache.monitor is not None
    cache.monitor.drain()
    wait.until(
        until.text_to_be_present_in_element(
            (By.ID, "consistency-statement"), "no inconsistency in 1 checks"
        )
    )
    assert "nines" in browser.find_element(By.ID, "consistency-value").text

    screenshot = Path(
        os.environ.get("FRESHCACHE_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png"
    )
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
