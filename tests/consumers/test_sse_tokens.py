"""Stream tokens over their life, and the cap on streams, on a real server and the real
broker: a revoked token's open stream ends within seconds, a rotated one's at the end of its
grace period, and a subscriber cannot open more streams than it may."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Bus
from tests.consumers.test_sse import Server, Stream, stream_server
from tests.support.components import run_xbus, wait_for
from tests.support.delivery_feed import DeliveryFeed
from xbus.consumers.sse.tokens import STREAM_TOKENS, new_token
from xbus.core.token_files import read_entries

pytestmark = pytest.mark.broker

SUFFIX = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def server(registered: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A stream service with heartbeats every second and at most 2 streams a subscriber."""
    directory = tmp_path_factory.mktemp("sse-tokens")
    tokens_file = directory / "sse-tokens.toml"
    tokens_file.touch()
    env = {"XBUS_SSE_MAX_STREAMS": "2"}
    with stream_server(
        registered, directory, tokens_file, "--heartbeat-interval", "1",
        name="sse-tokens", env_extra=env,
    ) as found:  # fmt: skip
        yield found


def _xbus(bus: Bus, *args: str) -> subprocess.CompletedProcess[str]:
    return run_xbus(bus.env(), *args, timeout=60)


def _subscriber(server: Server, registered: Bus, name: str) -> str:
    """A new subscriber of this run, with topics and a token known to ``server``."""
    who = f"sse_{name}_{SUFFIX}"
    DeliveryFeed(registered.settings, who)
    server.tokens[who] = new_token(server.tokens_file, who)
    wait_for(
        lambda: (
            server.get(
                {"Authorization": f"Bearer {server.tokens[who]}"}, {"datasets": "A"}
            ).status_code
            == 400
        ),
        5,
        "the service to take the new token",
    )  # a 400 for the bad query shows the token was accepted, without opening a stream
    return who


def _id_of(server: Server, token: str) -> str:
    sha = hashlib.sha256(token.encode()).hexdigest()
    entries = read_entries(server.tokens_file, STREAM_TOKENS)
    return next(e.id for e in entries if e.sha256 == sha)


def _ends_within(stream: Stream, seconds: float) -> float:
    """Read heartbeats until the stream ends; how long that took."""
    start = time.monotonic()
    with pytest.raises((EOFError, httpx.HTTPError)):
        while time.monotonic() - start < seconds:
            stream.message()
    return time.monotonic() - start


def test_a_revoked_tokens_open_stream_ends_and_it_is_refused(
    server: Server, registered: Bus
) -> None:
    who = _subscriber(server, registered, "revoked")
    token = server.tokens[who]
    with Stream(server, who) as stream:
        stream.position()
        assert stream.message().comment == "heartbeat"  # the stream is live

        done = _xbus(
            registered, "sse", "revoke", _id_of(server, token),
            "--tokens-file", str(server.tokens_file),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

        assert _ends_within(stream, 10) < 4
    refused = server.get({"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.metric("xbus_sse_streams_revoked_total", who) == 1


def test_a_rotated_tokens_stream_lasts_through_the_grace_period_only(
    server: Server, registered: Bus
) -> None:
    who = _subscriber(server, registered, "rotated")
    old = server.tokens[who]
    with Stream(server, who) as stream:
        stream.position()
        rotated = _xbus(
            registered, "sse", "rotate", "--subscriber", who, "--grace", "5s",
            "--tokens-file", str(server.tokens_file),
        )  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
        server.tokens[who] = rotated.stdout.strip()

        lasted = _ends_within(stream, 15)
        assert 2 < lasted < 9  # through the grace period, then ended within seconds
    assert server.get({"Authorization": f"Bearer {old}"}).status_code == 401
    with Stream(server, who) as fresh:  # the new token opens a stream
        fresh.position()


def test_a_subscriber_cannot_open_more_streams_than_it_may(server: Server, registered: Bus) -> None:
    who = _subscriber(server, registered, "capped")
    auth = {"Authorization": f"Bearer {server.tokens[who]}"}
    with Stream(server, who) as first, Stream(server, who) as second:
        first.position()
        second.position()

        third = server.get(auth)

        assert third.status_code == 429
        assert third.json()["error"]["code"] == "too_many_streams"
        assert int(third.headers["Retry-After"]) > 0
    # Once they are closed (the service notices within moments), it may stream again.
    wait_for(lambda: server.get(auth, {"datasets": "A"}).status_code == 400, 5, "a slot")
    with Stream(server, who) as again:
        again.position()


def test_nothing_but_health_answers_without_a_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    anonymous = server.get({})
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(f"{server.url}/metrics").status_code == 404
    assert httpx.get(f"{server.metrics}/metrics").status_code == 200
