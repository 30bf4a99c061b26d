"""Running xbus components as the real processes ``xbus run ...`` starts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from tests.conftest import Bus
from xbus.deploy.process import free_port

T = TypeVar("T")


def run_xbus(
    env: Mapping[str, str], *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``xbus <args>`` as a person runs it in a shell whose environment is ``env``: its exit
    code and output, captured; a failure is returned, not raised."""
    return subprocess.run(
        [sys.executable, "-m", "xbus.cli", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def component(
    bus: Bus, log_dir: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``xbus run <args>`` against ``bus``, stopped with SIGTERM afterwards; its output lands
    in ``log_dir/<name>.log`` and is shown if the test fails."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xbus.cli", "run", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**bus.env(), **(env or {})},
        )
    try:
        yield process
    except BaseException:
        print(f"--- {name} log ---\n{log_path.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def engine(
    bus: Bus,
    log_dir: Path,
    app_id: str,
    *,
    port: int = 0,
    name: str = "engine",
    extra: tuple[str, ...] = (),
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """An engine worker (``xbus run engine``) in consumer group ``app_id``, its /metrics on
    ``port`` (0: none), its Faust log at info level."""
    return component(
        bus,
        log_dir,
        name,
        "engine",
        "--app-id",
        app_id,
        "--metrics-port",
        str(port),
        "--loglevel",
        "info",
        *extra,
    )


def webhook_connector(
    bus: Bus, log_dir: Path, name: str, subscriber: str, url: str, secret: bytes, *extra: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A webhook connector process (``xbus run connector webhook``) for ``subscriber``
    posting to ``url``, signing with ``secret`` (given through XBUS_WEBHOOK_SECRET)."""
    return component(
        bus,
        log_dir,
        name,
        "connector",
        "webhook",
        "--subscriber",
        subscriber,
        "--url",
        url,
        "--metrics-port",
        "0",
        *extra,
        env={"XBUS_WEBHOOK_SECRET": secret.decode()},
    )


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_until_healthy(url: str, what: str, timeout: float = 30) -> None:
    """Wait until ``<url>/healthz`` answers 200; fail naming ``what`` on timeout."""

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout, f"{what} on {url}")


def metrics_port() -> int:
    """A free port for a component's /metrics."""
    return free_port()
