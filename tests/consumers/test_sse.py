"""The live stream (``xbus run sse``) as a real HTTP server on the real broker, read by real
HTTP clients."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Bus
from tests.support.components import component, wait_for, wait_until_healthy
from tests.support.delivery_feed import DeliveryFeed, licence
from xbus.consumers.sse.tokens import new_token
from xbus.core.envelope import Op
from xbus.deploy.process import free_port

pytestmark = pytest.mark.broker

SUFFIX = uuid.uuid4().hex[:8]
NAMES = ["resume", "auth", "other", "idle", "crowd", "narrow", "slow", "restart"]


def subscriber(name: str) -> str:
    """This run's subscriber called ``name`` (its topics are new to the broker)."""
    return f"sse_{name}_{SUFFIX}"


# -- a small SSE client ------------------------------------------------------------------------


@dataclass
class Message:
    """One SSE message: an event, a position (id only) or a comment (heartbeat)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None
    retry: int | None = None

    @property
    def payload(self) -> dict[str, Any]:
        assert self.data is not None
        found: dict[str, Any] = json.loads(self.data)
        return found


@dataclass
class Server:
    url: str
    pid: int
    metrics: str
    tokens_file: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def threads(self) -> int:
        """How many threads the server process runs now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no thread count")

    def metric(self, name: str, who: str) -> float:
        """The value of metric ``name`` for subscriber ``who`` (0 if not reported)."""
        text = httpx.get(f"{self.metrics}/metrics", timeout=10).raise_for_status().text
        for line in text.splitlines():
            if line.startswith(name + "{") and f'subscriber="{who}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def get(self, headers: dict[str, str], params: dict[str, str] | None = None) -> httpx.Response:
        """A stream request expected to be refused (answered without a stream)."""
        return httpx.get(f"{self.url}/v1/stream", headers=headers, params=params, timeout=30)


class Stream:
    """One SSE connection, read message by message; ``last_id`` is the last id received."""

    def __init__(
        self,
        server: Server,
        who: str,
        *,
        last_event_id: str | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {server.tokens[who]}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.last_id = last_event_id
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._request = self._client.stream(
            "GET", f"{server.url}/v1/stream", headers=headers, params=params
        )

    def __enter__(self) -> Stream:
        self.response = self._request.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._lines = self.response.iter_lines()
        return self

    def __exit__(self, *exc: object) -> None:
        self._request.__exit__(None, None, None)
        self._client.close()

    def message(self) -> Message:
        """The next message."""
        message, seen = Message(), False
        for line in self._lines:
            if not line:
                if seen:
                    if message.id is not None:
                        self.last_id = message.id
                    return message
                continue
            seen = True
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                message.comment = value
            elif name == "data":
                message.data = value if message.data is None else f"{message.data}\n{value}"
            elif name == "retry":
                message.retry = int(value)
            else:
                setattr(message, name, value)
        raise EOFError("the stream ended")

    def position(self) -> str:
        """The id-only message every stream starts with."""
        first = self.message()
        assert first.id and first.data is None and first.event is None, first
        return first.id

    def events(self, count: int, timeout: float = 120) -> list[dict[str, Any]]:
        """The next ``count`` events (heartbeats and positions skipped)."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} events came in time"
            message = self.message()
            if message.data is not None:
                found.append(message.payload)
        return found


# -- servers -----------------------------------------------------------------------------------


@contextmanager
def stream_server(
    bus: Bus,
    log_dir: Path,
    tokens_file: Path,
    *extra: str,
    name: str = "sse",
    env_extra: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``xbus run sse`` on a free port, once it answers."""
    port, metrics = free_port(), free_port()
    args = [
        *("sse", "--port", str(port), "--tokens-file", str(tokens_file)),
        *("--metrics-port", str(metrics), *extra),
    ]
    env = {"XBUS_SSE_DISCOVERY_INTERVAL": "1", **(env_extra or {})}
    with component(bus, log_dir, name, *args, env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, "the stream service")
        yield Server(url, process.pid, f"http://127.0.0.1:{metrics}", tokens_file)


def _tokens(tokens_file: Path, names: list[str]) -> dict[str, str]:
    return {subscriber(n): new_token(tokens_file, subscriber(n)) for n in names}


@pytest.fixture(scope="module")
def server(registered: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One stream service for the module, heartbeats every second."""
    directory = tmp_path_factory.mktemp("sse")
    tokens_file = directory / "sse-tokens.toml"
    tokens = _tokens(tokens_file, NAMES)
    crowd = {"XBUS_SSE_MAX_STREAMS": "20"}  # the crowd test's clients, all of one subscriber
    with stream_server(
        registered, directory, tokens_file, "--heartbeat-interval", "1", env_extra=crowd
    ) as found:
        found.tokens = tokens
        yield found


def _feed_by_key(sent: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_key: dict[str, list[str]] = defaultdict(list)
    for event in sent:
        by_key[event["key"]].append(event["event_id"])
    return dict(by_key)


def _send(feed: DeliveryFeed, count: int, keys: int, *, flush_every: int = 250) -> None:
    for n in range(count):
        key = n % keys
        op = Op.CREATE if n < keys else Op.UPDATE
        feed.send(f"licence-{key}", op, licence(key, n // keys))
        if n % flush_every == flush_every - 1:
            feed.flush()
    feed.flush()


# -- the tests -----------------------------------------------------------------------------------


def test_a_client_that_disconnects_and_resumes_sees_the_whole_stream_once_in_order(
    server: Server, registered: Bus
) -> None:
    who = subscriber("resume")
    feed = DeliveryFeed(registered.settings, who)
    total = 3000
    with Stream(server, who) as first:
        last_id = first.position()  # live: everything fed from now on
    feeding = threading.Thread(target=_send, args=(feed, total, 300), daemon=True)
    feeding.start()

    seen: list[dict[str, Any]] = []
    # Disconnect after these many events (0: right after the position), then read the rest.
    quotas = [1, 0, 97, 250, 613, 0, 420, 800, total]
    for quota in quotas:
        with Stream(server, who, last_event_id=last_id) as stream:
            seen += stream.events(min(quota, total - len(seen)))
            assert stream.last_id is not None
            last_id = stream.last_id
    feeding.join()

    ids = [e["event_id"] for e in seen]
    assert len(set(ids)) == len(ids), "an event came twice"
    assert set(ids) == {e["event_id"] for e in feed.sent}
    assert _feed_by_key(seen) == _feed_by_key(feed.sent)
    sent = {e["event_id"]: e for e in feed.sent}
    for event in seen:
        assert event["dataset"] == "business_licence"
        assert event["op"] == sent[event["event_id"]]["op"]
        assert event["after"]["credit_code"] == sent[event["event_id"]]["after"]["credit_code"]
        assert event["before"] is None


def test_a_missing_or_unknown_token_and_a_forged_or_foreign_id_are_refused(
    server: Server, registered: Bus
) -> None:
    who, other = subscriber("auth"), subscriber("other")
    DeliveryFeed(registered.settings, who)
    with Stream(server, who) as stream:
        resume_id = stream.position()
    with Stream(server, other) as stream:
        others_id = stream.position()

    def refused(response: httpx.Response, status: int, code: str, words: str) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert words in error["message"]

    token = server.tokens[who]
    refused(server.get({}), 401, "unauthorized", "Authorization: Bearer")
    refused(server.get({"Authorization": "Bearer xbs_wrong"}), 401, "unauthorized", "token")
    refused(
        server.get({"Authorization": f"Bearer {server.tokens[other]}x"}), 401, "unauthorized", ""
    )
    auth = {"Authorization": f"Bearer {token}"}
    body, mac = resume_id.split(".")
    forged = body[:10] + ("A" if body[10] != "A" else "B") + body[11:] + "." + mac
    refused(
        server.get({**auth, "Last-Event-ID": forged}),
        403,
        "forged_resume_id",
        "not issued by this service",
    )
    refused(
        server.get({**auth, "Last-Event-ID": others_id}),
        403,
        "foreign_resume_id",
        f"issued to subscriber '{other}'",
    )
    refused(
        server.get({**auth, "Last-Event-ID": "no-such-id"}),
        400,
        "malformed_resume_id",
        "not a resume id",
    )
    refused(server.get(auth, {"from": "yesterday"}), 400, "invalid_from", "'yesterday'")
    refused(server.get(auth, {"datasets": "Bad.Name"}), 400, "invalid_datasets", "Bad.Name")
    with Stream(server, who, last_event_id=resume_id) as stream:
        assert stream.position() == resume_id  # its own id is taken back


def test_an_idle_stream_carries_heartbeats(server: Server) -> None:
    with Stream(server, subscriber("idle")) as stream:
        stream.position()
        assert stream.message().comment == "heartbeat"
        assert stream.message().comment == "heartbeat"


def test_many_clients_at_once_each_receive_the_whole_feed_and_leave_nothing_behind(
    server: Server, registered: Bus
) -> None:
    who = subscriber("crowd")
    feed = DeliveryFeed(registered.settings, who)
    wait_for(lambda: server.metric("xbus_sse_clients", who) == 0 or None, 30, "no clients")
    threads_before = server.threads()
    clients, count = 20, 200
    ready = threading.Barrier(clients + 1)
    received: list[list[dict[str, Any]] | BaseException] = [[] for _ in range(clients)]

    def client(n: int) -> None:
        try:
            with Stream(server, who) as stream:
                stream.position()
                ready.wait(60)
                received[n] = stream.events(count)
        except BaseException as exc:
            received[n] = exc
            ready.abort()

    readers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for reader in readers:
        reader.start()
    ready.wait(60)
    assert server.metric("xbus_sse_clients", who) == clients
    _send(feed, count, 50)
    for reader in readers:
        reader.join(180)

    expected = _feed_by_key(feed.sent)
    for found in received:
        assert not isinstance(found, BaseException), found
        assert _feed_by_key(found) == expected
    wait_for(lambda: server.metric("xbus_sse_clients", who) == 0 or None, 30, "clients gone")
    wait_for(
        lambda: server.threads() <= threads_before or None,
        30,
        f"the server's threads (consumers' included) back to {threads_before}",
    )


def test_a_stream_narrows_to_some_datasets_and_takes_in_new_ones_as_they_appear(
    server: Server, registered: Bus
) -> None:
    who = subscriber("narrow")
    licences = DeliveryFeed(registered.settings, who)
    with (
        Stream(server, who, params={"from": "earliest"}) as everything,
        Stream(server, who, params={"datasets": "later_licence"}) as narrowed,
    ):
        everything.position()
        narrowed.position()
        _send(licences, 30, 10)
        assert _feed_by_key(everything.events(30)) == _feed_by_key(licences.sent)
        # A dataset granted while the clients are connected: its topic appears now.
        later = DeliveryFeed(registered.settings, who, dataset="later_licence")
        _send(later, 20, 5)
        found = everything.events(20)
        assert {e["dataset"] for e in found} == {"later_licence"}
        assert _feed_by_key(found) == _feed_by_key(later.sent)
        assert _feed_by_key(narrowed.events(20)) == _feed_by_key(later.sent)


def test_resume_ids_stay_valid_when_the_service_restarts(registered: Bus, tmp_path: Path) -> None:
    who = subscriber("restart")
    tokens_file = tmp_path / "sse-tokens.toml"
    tokens = _tokens(tokens_file, ["restart"])
    feed = DeliveryFeed(registered.settings, who)
    _send(feed, 10, 10)
    secrets_dir = tmp_path / "secrets"
    env = {"XBUS_SECRETS_DIR": str(secrets_dir)}
    with stream_server(
        registered, tmp_path, tokens_file, name="sse-before", env_extra=env
    ) as before:
        before.tokens = tokens
        with Stream(before, who, params={"from": "earliest"}) as stream:
            first = stream.events(4)
            assert stream.last_id is not None
            resume_id = stream.last_id
    # The key it made is kept with the other secrets, not next to the tokens file.
    assert (secrets_dir / "sse-resume-secret").exists()
    assert not (tmp_path / "sse-resume-secret").exists()
    with stream_server(registered, tmp_path, tokens_file, name="sse-after", env_extra=env) as after:
        after.tokens = tokens
        with Stream(after, who, last_event_id=resume_id) as stream:
            rest = stream.events(6)
    ids = [e["event_id"] for e in first + rest]
    assert sorted(ids) == sorted(e["event_id"] for e in feed.sent)


def test_a_client_that_reads_nothing_is_cut_off_and_others_receive_everything(
    registered: Bus, tmp_path: Path
) -> None:
    who = subscriber("slow")
    tokens_file = tmp_path / "sse-tokens.toml"
    tokens = _tokens(tokens_file, ["slow"])
    feed = DeliveryFeed(registered.settings, who)
    total = 20_000
    options = ("--slow-client-timeout", "3", "--heartbeat-interval", "1")
    with stream_server(registered, tmp_path, tokens_file, *options) as server:
        server.tokens = tokens
        port = int(server.url.rsplit(":", 1)[1])
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {tokens[who]}\r\n\r\n".encode()
        )
        with Stream(server, who) as reader:
            reader.position()
            wait_for(lambda: server.metric("xbus_sse_clients", who) == 2 or None, 30, "2 clients")
            feeding = threading.Thread(target=_send, args=(feed, total, 1000), daemon=True)
            feeding.start()
            found = reader.events(total, timeout=240)
            feeding.join()
            wait_for(
                lambda: server.metric("xbus_sse_clients_cut_off_total", who) == 1 or None,
                60,
                "the stuck client cut off",
            )
            assert server.metric("xbus_sse_clients", who) == 1
        assert _feed_by_key(found) == _feed_by_key(feed.sent)

        stuck.settimeout(60)
        taken = bytearray()
        try:
            while chunk := stuck.recv(1 << 16):
                taken += chunk
        except ConnectionResetError:
            pass  # dropped at once, the bytes still in flight with it
        finally:
            stuck.close()
        assert taken.startswith(b"HTTP/1.1 200")
        assert taken.count(b"\nevent: business_licence\n") < total
