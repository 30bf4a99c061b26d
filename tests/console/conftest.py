"""The office console served by a real HTTP server (uvicorn) over the test bus and the test
PostgreSQL, and a visitor that keeps its session cookie the way a browser does."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from tests.conftest import Bus
from xbus.console.accounts import Account, Role
from xbus.console.app import build_console
from xbus.console.flow import SharingFlow
from xbus.console.settings import ConsoleSettings
from xbus.console.store import ConsoleStore
from xbus.console.working_days import Calendar
from xbus.core.catalog import Catalog
from xbus.deploy.process import free_port

PASSWORD = "a long enough test password"
SESSION = "__Host-xbus-session"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Served:
    url: str
    flow: SharingFlow
    store: ConsoleStore
    tag: str

    def account(self, role: Role, party: str | None = None, language: str = "en") -> str:
        """A new account of ``role`` (for ``party``); its name."""
        name = f"{role.value[:4]}-{uuid.uuid4().hex[:8]}"
        self.store.add_account(Account(name, role, party, language), PASSWORD)
        return name


@contextmanager
def serving(flow: SharingFlow, settings: ConsoleSettings) -> Iterator[str]:
    """The console over ``flow`` served by uvicorn on ``settings.port``; its URL."""
    app = build_console(flow, settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def console_server(registered: Bus, postgres_dsn: str) -> Iterator[Served]:
    store = ConsoleStore(postgres_dsn)
    store.open()
    flow = SharingFlow(
        store,
        registered.settings,
        Catalog.load(registered.settings.schemas_dir),
        Calendar(),
    )
    settings = ConsoleSettings(port=free_port(), tick_interval=3600)
    with serving(flow, settings) as url:
        yield Served(url, flow, store, uuid.uuid4().hex[:6])
    store.close()


class Visitor:
    """An HTTP client that logs in through the form and sends its cookies back, as a
    browser would (the session cookie is ``Secure``; the test server speaks plain HTTP on
    loopback, which browsers treat as secure, so the cookie is set by hand here)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        self.session = ""

    def log_in(self, name: str, password: str = PASSWORD) -> httpx.Response:
        form = self.http.get("/login")
        nonce = _NONCE.search(form.text)
        assert nonce is not None, form.text
        self.http.cookies.set("__Host-xbus-login", nonce.group(1))
        answer = self.http.post(
            "/login",
            data={"name": name, "password": password, "nonce": nonce.group(1), "next": "/"},
        )
        cookie = answer.headers.get("set-cookie", "")
        found = re.search(rf"{SESSION}=([^;]+)", cookie)
        self.http.cookies.clear()
        if found:
            self.session = found.group(1)
            self.http.cookies.set(SESSION, self.session)
        return answer

    def use_session(self, token: str) -> None:
        self.http.cookies.clear()
        self.http.cookies.set(SESSION, token)

    def csrf(self, path: str = "/") -> str:
        page = self.http.get(path)
        found = _CSRF.search(page.text)
        assert found is not None, f"no CSRF token on {path}: {page.status_code}"
        return found.group(1)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(
        self, path: str, data: dict[str, object], csrf_from: str | None = "/"
    ) -> httpx.Response:
        body = dict(data)
        if csrf_from is not None:
            body["csrf"] = self.csrf(csrf_from)
        return self.http.post(path, data=body)  # type: ignore[arg-type]


@pytest.fixture()
def visitor(console_server: Served) -> Iterator[Visitor]:
    v = Visitor(console_server.url)
    yield v
    v.http.close()
