"""``make run`` as a person runs it: ``xbus stack up`` on a secured stack brings up the broker,
the registry, PostgreSQL, the engine, the connectors, the gateway, the live stream and the demo
department; every demo subscriber receives; Ctrl-C stops it all. From another shell, the
office's commands reach it (``xbus stack env``) and ``xbus sse revoke`` ends the demo's
stream token. Afterwards no secret the stack generated shows anywhere but its secrets
folder: not in a log, a data file (the topics' segments included), a metrics page, the output
of ``xbus stack env`` or a process's command line."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.support.checkout import ROOT
from tests.support.components import run_xbus, wait_for
from xbus.deploy.process import free_port
from xbus.deploy.stack import StackSettings

pytestmark = pytest.mark.broker

# The demo's metrics ports and its live stream (cli/xbus/cli/stack.py).
DEMO_PORTS = (9101, 9102, 9103, 9105, 9107, 9108, 9110)
STREAM = "http://127.0.0.1:8090/v1/stream"
SUBSCRIBERS = ("public_security", "tax_bureau", "social_security", "open_data")


def _command_lines() -> list[str]:
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            lines.append(
                (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            )
        except OSError:
            continue
    return lines


def _first_streamed_event(token_file: Path) -> str:
    """The first data line the demo's live stream sends its subscriber."""
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    deadline = time.monotonic() + 90
    with httpx.stream("GET", STREAM, headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data:") or time.monotonic() > deadline:
                return line
    return ""


def _others_read(path: Path, top: Path) -> bool:
    """Whether a user who is neither the owner nor in the group could read ``path``: it is
    world-readable and every folder from ``top`` down to it may be passed through."""
    folders = [p for p in path.parents if p == top or top in p.parents]
    passable = all(p.stat().st_mode & stat.S_IXOTH for p in folders)
    return passable and bool(path.stat().st_mode & stat.S_IROTH)


def _xbus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``xbus <args>`` run from the checkout, as a person runs it in another shell."""
    return run_xbus(env, *args, cwd=ROOT)


def _office_shell(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The environment ``eval "$(xbus stack env)"`` gives a shell, and what it printed."""
    printed = _xbus(env, "stack", "env")
    assert printed.returncode == 0, printed.stderr
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in printed.stdout.splitlines()
    )
    return {**env, **exported}, printed.stdout


def _revoke_demo_token(env: dict[str, str], token_file: Path) -> None:
    """Revoke the demo's stream token as docs/sse.md says, and see the stream refuse it."""
    listed = _xbus(env, "sse", "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    (token_id,) = [line.split()[0] for line in listed.stdout.splitlines() if "open_data" in line]
    revoked = _xbus(env, "sse", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    deadline = time.monotonic() + 10
    while httpx.get(STREAM, headers=headers, timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the revoked demo token still opens the stream"
        time.sleep(0.5)


def _secrets(folder: Path) -> dict[str, str]:
    """Every generated secret: each password and key file's contents (a PEM key's body)."""
    found = {}
    for path in folder.rglob("*"):
        if not path.is_file() or path.suffix in {".pub", ".properties", ".toml"}:
            continue
        text = path.read_text(encoding="utf-8").strip()
        if "-----BEGIN" in text:
            text = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        found[str(path.relative_to(folder))] = text
    return found


def _captured(delivered: Path) -> bool:
    """Whether the public security bureau has received a marriage registration: written with
    SQL into civil affairs' own database, captured by Debezium, bridged onto the bus."""
    return any(
        '"dataset": "marriage_registration"' in path.read_text(errors="replace")
        or '"dataset":"marriage_registration"' in path.read_text(errors="replace")
        for path in (delivered / "public_security").glob("*.jsonl")
    )


def _scraped(port: str) -> str:
    """Prometheus' targets page once it has scraped every component and the broker."""

    def all_up() -> str | None:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10)
        targets = answer.json()["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets if t["health"] == "up"}
        healthy = {"xbus", "kafka", "node", "prometheus", "alertmanager"} <= jobs
        return answer.text if healthy and all(t["health"] == "up" for t in targets) else None

    return wait_for(all_up, 60, "Prometheus to scrape every component and the broker")


def test_make_run_delivers_to_every_subscriber_and_leaks_no_secret(tmp_path: Path) -> None:
    # Outside pytest's 0700 folders: PostgreSQL may run as its own system user, which must
    # pass through to its data dir.
    home = Path(tempfile.mkdtemp(prefix="xbus-demo-"))
    home.chmod(0o711)
    try:
        _run_and_check(home, tmp_path)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_and_check(home: Path, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XBUS_")},
        "XBUS_HOME": str(home),
        "XBUS_STACK_CACHE_DIR": str(StackSettings().cache),
        "XBUS_STACK_KAFKA_PORT": str(free_port()),
        "XBUS_STACK_CONTROLLER_PORT": str(free_port()),
        "XBUS_STACK_REGISTRY_PORT": str(free_port()),
        "XBUS_STACK_REGISTRY_MANAGEMENT_PORT": str(free_port()),
        "XBUS_STACK_POSTGRES_PORT": str(free_port()),
        "XBUS_STACK_BROKER_METRICS_PORT": str(free_port()),
        "XBUS_STACK_PROMETHEUS_PORT": str(free_port()),
        "XBUS_STACK_ALERTMANAGER_PORT": str(free_port()),
        "XBUS_STACK_NODE_EXPORTER_PORT": str(free_port()),
        "XBUS_STACK_CONNECT_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "stack-up.log"
    with open(log, "wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "xbus.cli", "stack", "up", "--cdc", "--rate", "4"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    delivered = home / "data" / "out"
    pages: list[str] = []
    command_lines: list[str] = []
    token_file = home / "data" / "secrets" / "sse-demo.token"
    printed_env = ""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert stack.poll() is None, log.read_text(errors="replace")[-4000:]
            if all(list((delivered / s).glob("*.jsonl")) for s in SUBSCRIBERS) and _captured(
                delivered
            ):
                break
            time.sleep(2)
        else:
            pytest.fail(
                f"not every subscriber received:\n{log.read_text(errors='replace')[-4000:]}"
            )
        command_lines = _command_lines()
        streamed = _first_streamed_event(token_file)
        for port in (*DEMO_PORTS, env["XBUS_STACK_BROKER_METRICS_PORT"]):
            pages.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        # Prometheus scrapes every component and the broker.
        pages.append(_scraped(env["XBUS_STACK_PROMETHEUS_PORT"]))
        # Another shell, in the same folder and with the same XBUS_HOME (and ports) as make run.
        office, printed_env = _office_shell(env)
        verified = _xbus(office, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "chains verified" in verified.stdout
        _revoke_demo_token(env, token_file)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    output = log.read_text(errors="replace")
    assert "xbus is up" in output and output.rstrip().endswith("stopped."), output[-3000:]
    # Every component ran to the end under its own user.
    assert "stopped unexpectedly" not in output, output[-3000:]
    assert "bus provisioned from bus.yaml" in output
    assert streamed.startswith("data:")

    secrets_dir = home / "data" / "secrets"
    secrets = _secrets(secrets_dir)
    assert {"kafka/admin.password", "registry/office.password", "pseudonym.key"} <= set(secrets)
    assert "sse-resume-secret" in secrets
    scanned = [
        path
        for path in home.rglob("*")
        if path.is_file() and secrets_dir not in path.parents and "cache" not in path.parts
    ]
    leaks = []
    for path in scanned:
        data = path.read_bytes()
        leaks += [
            f"{name} in {path}" for name, secret in secrets.items() if secret.encode() in data
        ]
    for name, secret in secrets.items():
        leaks += [f"{name} on a command line" for line in command_lines if secret in line]
        leaks += [f"{name} on a metrics page" for page in pages if secret in page]
        if secret in output:
            leaks.append(f"{name} in the output of xbus stack up")
        if secret in printed_env:
            leaks.append(f"{name} in the output of xbus stack env")
    assert len(scanned) > 100  # logs, Kafka's segments, PostgreSQL's files, delivered files
    assert not leaks
    # Nor can another user of the machine read the records, deliveries or logs on disk (only
    # pid files and PostgreSQL's socket folder stay reachable).
    data = home / "data"
    open_to_others = [
        path
        for path in data.rglob("*")
        if path.is_file() and "run" not in path.relative_to(data).parts and _others_read(path, home)
    ]
    assert not open_to_others, open_to_others[:10]
