"""The gateway's keys over their life, and its limits, on a real server and the real broker:
revocation and rotation take effect without a restart, an oversized body is refused before
it is read, a key over its rate is told when to come back, and nothing but health answers
without a key."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Bus
from tests.producers.test_gateway import EVENTS, Gateway, start_gateway
from tests.support.components import run_xbus, wait_for
from xbus.core.token_files import read_entries
from xbus.core.values import to_json
from xbus.producers.demodata import DemoData
from xbus.producers.gateway.keys import GATEWAY_KEYS, new_key

pytestmark = pytest.mark.broker

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def gateway(registered: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with a 64 KiB body limit and rates that these tests do not reach."""
    env = {"XBUS_GATEWAY_MAX_BODY_BYTES": str(BODY_LIMIT)}
    yield from start_gateway(registered, tmp_path_factory.mktemp("gw"), "gateway-sec", env)


def _event(seed: int) -> dict[str, object]:
    return {"op": "CREATE", "after": DemoData(seed=seed).vaccination_record()}


def _xbus(bus: Bus, *args: str) -> subprocess.CompletedProcess[str]:
    """``xbus <args>`` as a person runs it, against ``bus``."""
    return run_xbus(bus.env(), *args, timeout=60)


def _id_of(keys_file: Path, key: str) -> str:
    import hashlib

    sha = hashlib.sha256(key.encode()).hexdigest()
    return next(e.id for e in read_entries(keys_file, GATEWAY_KEYS) if e.sha256 == sha)


def test_a_revoked_key_is_refused_within_seconds_without_a_restart(
    gateway: Gateway, registered: Bus
) -> None:
    key = new_key(gateway.keys_file, "health")
    wait_for(lambda: gateway.post(EVENTS, _event(40), key=key).status_code == 202, 5, "the new key")

    done = _xbus(
        registered, "gateway", "revoke", _id_of(gateway.keys_file, key),
        "--keys-file", str(gateway.keys_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()

    def refused_now() -> httpx.Response | None:
        answer = gateway.post(EVENTS, _event(41), key=key)
        return answer if answer.status_code == 401 else None

    refused = wait_for(refused_now, 5, "the revoked key to be refused")
    assert time.monotonic() - revoked_at < 2.5
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert refused.json()["error"]["code"] == "unauthorized"
    # The same answer as for a key that never was: nothing says the key existed.
    never = gateway.post(EVENTS, _event(42), key="xbk_never-was")
    assert never.json() == refused.json()
    assert gateway.post(EVENTS, _event(43)).status_code == 202  # other keys go on


def test_a_rotated_key_works_through_its_grace_period_then_not(
    gateway: Gateway, registered: Bus
) -> None:
    old = new_key(gateway.keys_file, "health")  # the key the department rotates out
    listed = _xbus(registered, "gateway", "keys", "list", "--keys-file", str(gateway.keys_file))
    assert _id_of(gateway.keys_file, old) in listed.stdout and old not in listed.stdout

    rotated = _xbus(
        registered, "gateway", "rotate", "--department", "health", "--grace", "4s",
        "--keys-file", str(gateway.keys_file),
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("xbk_")

    wait_for(lambda: gateway.post(EVENTS, _event(44), key=new).status_code == 202, 5, "new key")
    assert gateway.post(EVENTS, _event(45), key=old).status_code == 202  # within its grace
    wait_for(
        lambda: gateway.post(EVENTS, _event(46), key=old).status_code == 401,
        10,
        "the old key to expire after its grace period",
    )
    assert gateway.post(EVENTS, _event(47), key=new).status_code == 202
    gateway.key = new  # the fixture's health key was rotated out with the others


def test_a_body_over_the_limit_is_refused_with_a_content_length(gateway: Gateway) -> None:
    events = {"events": [_event(50 + n) for n in range(200)]}

    answer = gateway.post(f"{EVENTS}/batch", events)

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert str(BODY_LIMIT) in answer.json()["error"]["message"]


def _response(conn: socket.socket) -> str:
    """One whole HTTP response (with a Content-Length) read from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(gateway: Gateway) -> None:
    """The client sends a little more than the limit and stops without ending its body: the
    gateway answers 413 all the same, so it does not wait for (or keep) the rest."""
    host, port = gateway.url.removeprefix("http://").split(":")
    chunk = b"[" + b" " * 16382 + b"]"
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(
            (
                f"POST {EVENTS}/batch HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {gateway.key}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        for _ in range(BODY_LIMIT // len(chunk) + 1):
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        answer = _response(conn)

    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"too_large"' in answer and str(BODY_LIMIT) in answer


def test_a_deeply_nested_body_is_refused_as_json_and_the_gateway_goes_on(
    gateway: Gateway,
) -> None:
    """30,000 arrays inside one another (within this gateway's 64 KiB): a 400 the client can
    read, not a 500 in plain text with a RecursionError in the log."""
    deep = b"[" * 30_000 + b"]" * 30_000
    headers = {"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"}

    for path in (EVENTS, f"{EVENTS}/batch"):
        answer = httpx.post(gateway.url + path, content=deep, headers=headers, timeout=30)

        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "too_deep"
        assert "64 levels" in answer.json()["error"]["message"]
    # Brackets inside strings are text, not nesting: this event is read and checked as usual.
    shallow = _event(61)
    shallow["trace_id"] = "[" * 1000
    assert gateway.post(EVENTS, shallow).status_code == 202
    log = gateway.log_file.read_text(errors="replace")
    assert "RecursionError" not in log and "Traceback" not in log


def test_every_refusal_is_the_gateways_json_error(gateway: Gateway) -> None:
    """What FastAPI and Starlette refuse themselves answers in the gateway's shape too."""
    headers = {"Authorization": f"Bearer {gateway.key}"}
    answers = {
        "not_found": httpx.get(f"{gateway.url}/v1/nowhere", headers=headers),
        "method_not_allowed": httpx.get(gateway.url + EVENTS, headers=headers),
        "invalid_request": httpx.post(
            f"{gateway.url}{EVENTS}/batch",
            params={"partial": "maybe"},
            content=to_json({"events": [_event(62)]}),
            headers=headers,
        ),
    }
    for code, answer in answers.items():
        assert answer.headers["content-type"] == "application/json", code
        assert answer.json()["error"]["code"] == code, answer.text
    assert answers["invalid_request"].status_code == 400
    assert "partial" in answers["invalid_request"].json()["error"]["message"]


def test_nothing_but_health_answers_without_a_key(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    for path in ("/openapi.json", EVENTS):
        answer = httpx.request("GET" if path.endswith("json") else "POST", gateway.url + path)
        assert answer.status_code == 401, path
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    body = to_json(_event(60))
    basic = httpx.post(gateway.url + EVENTS, auth=("health", gateway.key), content=body)
    assert basic.status_code == 401
    for path in ("/metrics", "/docs"):
        assert httpx.get(gateway.url + path).status_code == 404, path
    # The metrics are on their own port, bound to loopback.
    assert httpx.get(f"{gateway.metrics}/metrics").status_code == 200


def test_a_key_over_its_rate_gets_429_with_retry_after(registered: Bus, tmp_path: Path) -> None:
    env = {"XBUS_GATEWAY_RATE": "1", "XBUS_GATEWAY_BURST": "5"}
    second = new_key(tmp_path / "gateway-rate-keys.toml", "health")  # start_gateway adds to it
    for gateway in start_gateway(registered, tmp_path, "gateway-rate", env):
        batch = {"events": [_event(70 + n) for n in range(5)]}
        assert gateway.post(f"{EVENTS}/batch", batch).status_code == 202

        over = gateway.post(EVENTS, _event(80))

        assert over.status_code == 429
        assert over.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(over.headers["Retry-After"]) <= 5
        assert gateway.metric("xbus_gateway_rate_limited_total", department="health") == 1
        # Each key has its own bucket; a batch over the burst can never pass.
        assert gateway.post(EVENTS, _event(81), key=second).status_code == 202
        too_big = gateway.post(f"{EVENTS}/batch", {"events": [_event(90)] * 6}, key=second)
        assert too_big.status_code == 413
        time.sleep(int(over.headers["Retry-After"]))  # what the client was told to wait
        assert gateway.post(EVENTS, _event(82)).status_code == 202
