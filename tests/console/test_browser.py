"""The console end to end in a real browser (Debian's Chromium through Playwright) against
real parts: a subscriber requests a conditional dataset, the office reviews it, the owning
department masks one field and approves, the engine delivers the masked view to the
subscriber's webhook within seconds, the office revokes, deliveries stop. Every page is
checked with axe; each step is photographed in Chinese and in English."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import Bus
from tests.console.conftest import PASSWORD, Served, serving
from tests.support.components import engine, metrics_port, wait_for, webhook_connector
from tests.support.webhook_receiver import webhook_receiver
from xbus.console.accounts import Role
from xbus.console.settings import ConsoleSettings
from xbus.console.sharing import State
from xbus.core.envelope import Op
from xbus.deploy.process import free_port
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher

pytestmark = pytest.mark.broker

CHROMIUM = "/usr/bin/chromium"
SECRET = b"the-console-e2e-webhook-secret-of-32-bytes-or-more"
GRANTED = {"credit_code", "name", "legal_representative_id"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Person:
    """One person at their own browser (a context of its own: cookies and all)."""

    def __init__(self, browser: Browser, url: str, name: str, shots: Path, axe: Axe) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.url, self.name, self.shots, self.axe = url, name, shots, axe
        self.problems: list[str] = []

    def log_in(self) -> None:
        self.page.goto(f"{self.url}/login")
        self.check("login")
        self.page.fill("#name", self.name)
        self.page.fill("#password", PASSWORD)
        self.page.click("form.login button[type=submit]")
        self.page.wait_for_url(f"{self.url}/")

    def open(self, path: str) -> Page:
        answer = self.page.goto(f"{self.url}{path}")
        assert answer is not None and answer.status == 200, f"{path}: {answer and answer.status}"
        return self.page

    def check(self, step: str) -> None:
        """Photograph the page and check it with axe: no serious or critical violation."""
        self.page.screenshot(path=str(self.shots / f"{step}.png"), full_page=True)
        results = self.axe.run(self.page)
        for violation in results.response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                self.problems.append(
                    f"{step} ({self.page.url}): {violation['id']}: {violation['help']}"
                )

    def close(self) -> None:
        self.context.close()


def _publish_licence(served: Served) -> tuple[str, dict[str, Any]]:
    licence = DemoData(seed=int(uuid.uuid4().hex[:6], 16)).business_licence()
    with Publisher("market_regulation", system="console-e2e", settings=served.flow.settings) as p:
        receipt = p.publish_sync("business_licence", Op.CREATE, after=licence)
    return receipt.event_id, licence


@pytest.mark.timeout(900)
def test_a_request_approved_in_the_browser_reaches_the_subscriber_masked_and_a_revoke_stops_it(
    browser: Browser, console_server: Served, registered: Bus, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    subscriber = f"e2e_{tag}"
    shots = tmp_path / "console"
    shots.mkdir()
    axe = Axe()
    people: dict[str, Person] = {}
    engine_metrics, connector_metrics = metrics_port(), metrics_port()
    settings = ConsoleSettings(
        port=free_port(),
        tick_interval=3600,
        flow_interval=1.0,
        metrics_endpoints=f"engine=http://127.0.0.1:{engine_metrics},"
        f"webhook=http://127.0.0.1:{connector_metrics}",
    )
    with (
        webhook_receiver(SECRET) as target,
        engine(registered, tmp_path, f"console-e2e-{tag}", port=engine_metrics),
        webhook_connector(
            registered,
            tmp_path,
            "webhook",
            subscriber,
            target.url,
            SECRET,
            "--metrics-port",
            str(connector_metrics),
        ),
        serving(console_server.flow, settings) as url,
    ):
        for key, role, party, language in (
            ("subscriber", Role.SUBSCRIBER, subscriber, "zh-CN"),
            ("subscriber-en", Role.SUBSCRIBER, subscriber, "en"),
            ("office", Role.OFFICE, None, "zh-CN"),
            ("office-en", Role.OFFICE, None, "en"),
            ("owner", Role.DEPARTMENT, "market_regulation", "zh-CN"),
            ("owner-en", Role.DEPARTMENT, "market_regulation", "en"),
        ):
            name = console_server.account(role, party, language)
            people[key] = Person(browser, url, name, shots, axe)
            people[key].log_in()
        try:
            _the_story(console_server, people, target, subscriber)
        finally:
            problems = [p for person in people.values() for p in person.problems]
            for person in people.values():
                person.close()
            kept = os.environ.get("XBUS_TEST_OUTPUT")
            if kept:
                shutil.copytree(shots, Path(kept) / "console", dirs_exist_ok=True)
            print(f"screenshots of the console: {shots}")
    assert problems == []
    assert len(list(shots.glob("*.png"))) >= 20


def _both(people: dict[str, Person], who: str, path: str, step: str) -> None:
    """The page at ``path`` photographed and checked in Chinese and in English."""
    people[who].open(path)
    people[who].check(f"{step}-zh")
    people[f"{who}-en"].open(path)
    people[f"{who}-en"].check(f"{step}-en")


def _the_story(served: Served, people: dict[str, Person], target: Any, subscriber: str) -> None:
    asker = people["subscriber"].page
    _both(people, "subscriber", "/", "01-home")
    _both(people, "subscriber", "/catalogue", "02-catalogue")
    people["subscriber"].open("/catalogue")
    asker.click("a[href='/catalogue/market_regulation/business_licence']")
    people["subscriber"].check("03-dataset-zh")
    assert "有条件共享" in asker.inner_text("main")
    asker.click("text=申请此数据资源")
    people["subscriber"].check("04-request-form-zh")
    for field in GRANTED:
        asker.check(f"input[name='ask:{field}']")
    asker.fill("#purpose", "为新设立企业办理税务登记")
    asker.fill("#scenario", "区税务局窗口 (tax registration at the district office)")
    asker.fill("#legal_basis", "税收征收管理法 第十五条")
    asker.click("form.request button[type=submit]")
    asker.wait_for_url(re.compile(r".*/requests/\d+\?done=filed"))
    number = int(re.findall(r"/requests/(\d+)", asker.url)[0])
    assert "待审查" in asker.inner_text("main")
    people["subscriber"].check("05-filed-zh")
    people["subscriber-en"].open(f"/requests/{number}")
    people["subscriber-en"].check("05-filed-en")

    office = people["office"]
    office.open(f"/requests/{number}")
    office.check("06-review-zh")
    people["office-en"].open(f"/requests/{number}")
    people["office-en"].check("06-review-en")
    office.page.click("text=通过：转数据提供部门")
    office.page.wait_for_url(re.compile(rf".*/requests/{number}\?done=reviewed"))
    assert served.store.request(number).state is State.PENDING_OWNER

    owner = people["owner"]
    owner.open(f"/requests/{number}")
    owner.check("07-answer-zh")
    people["owner-en"].open(f"/requests/{number}")
    people["owner-en"].check("07-answer-en")
    owner.page.select_option("select[name='mask:legal_representative_id']", "show_last")
    owner.page.fill("input[name='mask_n:legal_representative_id']", "4")
    owner.page.fill("#answer-reason", "身份证号仅用于核对法定代表人，保留后四位")
    approved_at = time.monotonic()
    owner.page.click("text=批准并生效")
    owner.page.wait_for_url(re.compile(rf".*/requests/{number}\?done=answered"))
    applied = served.store.request(number)
    assert applied.state is State.APPLIED and applied.grant_id
    assert "已生效" in owner.page.inner_text("main")
    _both(people, "owner", f"/requests/{number}", "08-applied")

    # The subscriber receives the view within seconds, masked as the owner said.
    event_id, licence = _publish_licence(served)
    got = wait_for(lambda: target.processed.get(event_id), 60, "the masked view at the webhook")
    seconds = time.monotonic() - approved_at
    view = got["after"]
    assert set(view) == GRANTED
    source_id = str(licence["legal_representative_id"])
    assert view["legal_representative_id"] == "*" * (len(source_id) - 4) + source_id[-4:]
    assert view["credit_code"] == licence["credit_code"]
    print(f"approval to delivery at the webhook: {seconds:.1f} s")

    _both(people, "subscriber", "/grants", "09-grants")
    flow = people["office"].open(f"/grants/{applied.grant_id}/flow")
    flow.wait_for_function(
        "() => Number(document.querySelector('[data-flow=delivered]')?.textContent) >= 1",
        timeout=60_000,
    )
    people["office"].check("10-flow-zh")
    people["office-en"].open(f"/grants/{applied.grant_id}/flow")
    people["office-en"].page.wait_for_selector("[data-flow=delivered]", timeout=60_000)
    people["office-en"].check("10-flow-en")
    _both(people, "owner", f"/grants/{applied.grant_id}/preview", "11-preview")
    assert source_id in people["owner"].page.inner_text("main")
    denied = people["subscriber"].page.goto(
        f"{people['subscriber'].url}/grants/{applied.grant_id}/preview"
    )
    assert denied is not None and denied.status == 403
    assert source_id not in people["subscriber"].page.content()
    _both(people, "office", f"/audit?subscriber={subscriber}&window=1h", "12-audit")
    assert event_id in people["office"].page.inner_text("main")

    office.open(f"/requests/{number}")
    office.page.fill("#revoke-reason", "使用目的已完成")
    office.page.click("text=撤销授权")
    office.page.wait_for_url(re.compile(rf".*/requests/{number}\?done=revoked"))
    assert "已撤销" in office.page.inner_text("main")
    _both(people, "office", f"/requests/{number}", "13-revoked")
    time.sleep(3)  # the engine reads the tombstone within about a second
    after_revoke, _ = _publish_licence(served)
    time.sleep(10)
    assert after_revoke not in target.processed
