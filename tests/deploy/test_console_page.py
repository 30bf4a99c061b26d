"""The overview page of the local stack (Prometheus' console template deploy/prometheus/
consoles/xbus.html), loaded in a real browser, Debian's Chromium, while Prometheus scrapes a
real broker and a real connector: it renders, its graphs are drawn from live series, and a
screenshot is kept with the test's output."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Bus
from tests.support.components import wait_for, webhook_connector
from tests.support.delivery_feed import DeliveryFeed, licence
from tests.support.monitoring import monitoring_for
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.envelope import Op
from xbus.deploy.monitoring import LocalMonitoring, ScrapeTarget
from xbus.deploy.process import free_port

pytestmark = pytest.mark.broker

CHROMIUM = "/usr/bin/chromium"
# Graphs of what a connector and the broker report (the engine and the departments are not
# part of this test): each must show at least one line.
DRAWN = ("lag", "latency", "broker")


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    return CHROMIUM


def _scrapes(prometheus: str, job: str) -> int:
    query = f'min(count_over_time(up{{job="{job}"}}[5m]))'
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()
    series = result["data"]["result"]
    return int(float(series[0]["value"][1])) if series else 0


def test_the_overview_page_draws_live_graphs(bus: Bus, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    subscriber = f"sub_{uuid.uuid4().hex[:8]}"
    secret = b"the-subscriber-secret-of-at-least-32-bytes-for-hmac"
    metrics = free_port()
    config = monitoring_for(tmp_path)
    broker = os.environ.get("XBUS_BROKER_METRICS_URL", "")
    targets = [ScrapeTarget("xbus", f"127.0.0.1:{metrics}", {"component": "webhook"})]
    if broker:
        targets.append(ScrapeTarget("kafka", broker.split("/")[2], {"component": "kafka"}))
    feed = DeliveryFeed(bus.settings, subscriber)
    monitoring = LocalMonitoring(config)
    with (
        webhook_receiver(secret) as target,
        webhook_connector(
            bus, tmp_path, "webhook", subscriber, target.url, secret, "--metrics-port", str(metrics)
        ),
    ):
        monitoring.start(targets)
        try:
            for n in range(20):
                feed.send(f"k{n}", Op.CREATE, licence(n))
            feed.flush()
            wait_for(lambda: len(target.processed) == 20, 60, "the events to arrive")
            wait_for(lambda: _scrapes(config.prometheus_url, "xbus") >= 5, 60, "five scrapes")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1800})
                    # The last two minutes (the page's own time control, in its URL).
                    window = quote(json.dumps({"duration": 120, "endTime": 0}))
                    answer = page.goto(f"{config.console_url}#pctc{window}")
                    assert answer is not None and answer.status == 200
                    for graph in DRAWN:
                        page.wait_for_selector(
                            f"#{graph} svg path.path", state="attached", timeout=30_000
                        )
                        assert "No timeseries returned" not in page.inner_text(f"#{graph}")
                    text = page.inner_text("body")
                    screenshot = tmp_path / "xbus-overview.png"
                    page.screenshot(path=str(screenshot), full_page=True)
                finally:
                    browser.close()
        finally:
            monitoring.stop()
    assert "数据交换总线" in text and "Components" in text
    assert "webhook" in text and "DOWN" not in text
    assert screenshot.stat().st_size > 20_000
    kept = os.environ.get("XBUS_TEST_OUTPUT")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(kept) / screenshot.name)
    print(f"screenshot of the overview page: {screenshot}")
