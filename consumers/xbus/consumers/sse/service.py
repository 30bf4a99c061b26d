"""The live stream: a subscriber's granted datasets over HTTP as Server-Sent Events.

``GET /v1/stream`` with ``Authorization: Bearer <token>`` streams every
``deliver.<subscriber>.<dataset>`` topic of the token's subscriber (``?datasets=a,b`` narrows
it), topics that appear later included. A new client starts at the live end, or at the
beginning with ``?from=earliest``; a client that sends ``Last-Event-ID`` goes on exactly after
that event, nothing lost and nothing repeated. Each event is ``id: <resume id>``,
``event: <dataset>``, ``data: <JSON>``; an idle stream carries a ``: heartbeat`` comment every
``heartbeat_interval`` seconds. A client that takes no data for ``slow_client_timeout`` seconds
while events wait is cut off; every client has its own Kafka consumer, so no client slows
another.

401 is a missing, unknown, revoked or expired token, 400 a bad query or a malformed resume id,
403 a resume id that was forged or issued to another subscriber, 429 a subscriber that already
has ``max_streams`` streams open, 503 a broker that did not answer. A stream whose token is
revoked (``xbus sse revoke``) or expires after a rotation ends within ``reload_interval``
seconds or so. Only ``/healthz`` answers without a token; metrics are served on a port of their
own (``xbus run sse --metrics-port``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections import Counter as Tally
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from xbus.consumers.sse.feed import Chunk, ClientFeed, FeedFailed, FeedOptions, Start
from xbus.consumers.sse.ids import Positions, ResumeIdRefused, ResumeIds
from xbus.core.errors import ConfigurationError, HttpRefusal
from xbus.core.metrics import (
    END_TO_END_LATENCY,
    EVENTS_DELIVERED,
    SSE_CLIENTS,
    SSE_CLIENTS_CUT_OFF,
    SSE_STREAMS_ENDED_REVOKED,
    SSE_STREAMS_REFUSED,
)
from xbus.core.refusals import refusal_response
from xbus.core.secret_files import open_private
from xbus.core.serde import WriterSchemas, registry_client
from xbus.core.settings import BusSettings, bus_settings, home_dir
from xbus.core.token_files import Holder, TokenFile

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/stream"
# The file of the resume-id key the service makes, in the secrets folder.
RESUME_SECRET = "sse-resume-secret"
CONNECTOR = "sse"


_DATASET = re.compile(r"^[a-z][a-z0-9_]*$")
_HEARTBEAT = b": heartbeat\n\n"
_REVOKED = b": token revoked\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # a proxy in front must not hold events back
]


class StreamSettings(BaseSettings):
    """The live stream's own settings (environment prefix ``XBUS_SSE_``)."""

    model_config = SettingsConfigDict(env_prefix="XBUS_SSE_", extra="ignore")

    tokens_file: Path = Field(default_factory=lambda: home_dir() / "sse-tokens.toml")
    # Where it listens: loopback unless told otherwise (a proxy or a container maps it out).
    host: str = "127.0.0.1"
    port: int = 8090
    # /metrics on its own port, bound to XBUS_METRICS_HOST (loopback by default); 0: none.
    metrics_port: int = 9107
    # Streams one subscriber may hold open at once, all its tokens together.
    max_streams: int = Field(default=8, gt=0)
    # How often, at most, the service looks whether the tokens file changed, and open
    # streams whether their token is still in force.
    reload_interval: float = Field(default=1.0, gt=0)
    secret: SecretStr | None = None
    secret_file: Path | None = None
    heartbeat_interval: float = 15.0
    slow_client_timeout: float = 30.0
    discovery_interval: float = 5.0
    start_timeout: float = 30.0

    def resume_secret(self, secrets_dir: Path | None = None) -> bytes:
        """The key resume ids are signed with: ``XBUS_SSE_SECRET``, else the contents of
        ``XBUS_SSE_SECRET_FILE``, else a key made once and kept in the secrets folder
        (``<XBUS_SECRETS_DIR>/sse-resume-secret``, ``secrets_dir`` if given), so ids stay
        valid across restarts. A key kept by an earlier version next to the tokens file is
        moved there."""
        if self.secret is not None:
            value, where = self.secret.get_secret_value(), "XBUS_SSE_SECRET"
        elif self.secret_file is not None:
            if not self.secret_file.is_file():
                raise ConfigurationError(
                    f"XBUS_SSE_SECRET_FILE names {self.secret_file}, which is not a file"
                )
            value, where = (
                self.secret_file.read_text(encoding="utf-8").strip(),
                str(self.secret_file),
            )
        else:
            folder = secrets_dir if secrets_dir is not None else bus_settings().secrets_dir
            path = folder / RESUME_SECRET
            _move_old_secret(self.tokens_file.parent / RESUME_SECRET, path)
            value, where = _kept_secret(path), str(path)
        if len(value.encode()) < 16:
            raise ConfigurationError(
                f"the resume-id secret from {where} is too short: use at least 16 characters"
            )
        return value.encode()


def _move_old_secret(old: Path, new: Path) -> None:
    """Move the key an earlier version kept at ``old`` to ``new``, unless ``new`` exists."""
    if not old.is_file() or new.exists():
        return
    new.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.link(old, new)  # atomic, keeps the file's 0600; fails if a second server was first
    except FileExistsError:
        return
    except OSError:  # another filesystem: copy the key (still readable by its owner only)
        _kept_secret(new, old.read_text(encoding="utf-8").strip())
    old.unlink(missing_ok=True)


def _kept_secret(path: Path, value: str | None = None) -> str:
    """The secret in ``path``, written (readable by its owner only) if there is none yet:
    ``value``, else a new random one."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        with open_private(draft) as f:
            f.write((value or secrets.token_urlsafe(32)) + "\n")
        try:
            os.link(draft, path)  # atomic: a second server starting now keeps the first's key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()


class StreamRefused(HttpRefusal):
    """An answer other than the stream, with its status and error code (``reason``)."""


def _datasets(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    if not names or not all(_DATASET.match(n) for n in names):
        raise StreamRefused(
            400,
            "invalid_datasets",
            f"datasets must be dataset names separated by commas, got {value!r}",
        )
    return names


def _drop_connection(send: Send) -> None:
    """Close the client's connection at once, dropping what is still buffered for it. Ending
    the response would close it politely, which waits until the client has taken everything
    buffered: a client that reads nothing would hold its connection and buffers for good.
    uvicorn's ``send`` is a method of the request cycle, which holds the transport; under
    another server the polite close is what remains."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


class StreamService:
    """The ASGI app: ``/v1/stream`` and ``/healthz``."""

    def __init__(
        self,
        settings: BusSettings,
        tokens: TokenFile,
        secret: bytes,
        options: StreamSettings,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._open: Tally[str] = Tally()  # streams open (or starting) per subscriber
        self._ids = ResumeIds(secret)
        self._options = options
        self._feed_options = FeedOptions(discovery_interval=options.discovery_interval)
        self._schemas = WriterSchemas(registry_client(settings))
        self._others = Starlette(routes=[Route("/healthz", _healthz)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The stream is served here, outside Starlette's middleware, so that ``send`` is the
        # server's own (see _drop_connection).
        if scope["type"] == "http" and scope["path"] == STREAM_PATH:
            await self._stream(scope, receive, send)
        else:
            await self._others(scope, receive, send)

    # -- admission -------------------------------------------------------------------------------

    def _holder(self, request: Request) -> Holder:
        """Who the request's token speaks for; 401 alike for a missing, unknown, revoked or
        expired token, so the answer never says whether a subscriber exists."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        holder = self._tokens.holder_of(token.strip()) if scheme.lower() == "bearer" else None
        if holder is None:
            raise StreamRefused(
                401,
                "unauthorized",
                "a valid stream token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="xbus-stream"'},
            )
        return holder

    def _check_room(self, subscriber: str) -> None:
        if self._open[subscriber] >= self._options.max_streams:
            raise StreamRefused(
                429,
                "too_many_streams",
                f"this subscriber already has {self._options.max_streams} streams open, the "
                "most it may (XBUS_SSE_MAX_STREAMS); close one, or retry later",
                headers={"Retry-After": "5"},
            )

    def _start(self, request: Request, subscriber: str) -> Start:
        resume_id = request.headers.get("last-event-id")
        if resume_id:
            positions: Positions = self._ids.read(subscriber, resume_id)
            return Start(positions=positions)
        origin = request.query_params.get("from", "latest")
        if origin not in ("latest", "earliest"):
            raise StreamRefused(
                400, "invalid_from", f"from must be 'latest' or 'earliest', got {origin!r}"
            )
        return Start(earliest=origin == "earliest")

    # -- streaming -------------------------------------------------------------------------------

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            if request.method != "GET":
                raise StreamRefused(405, "method_not_allowed", f"use GET on {STREAM_PATH}")
            holder = self._holder(request)
            subscriber = holder.principal
            self._check_room(subscriber)
            datasets = _datasets(request.query_params.get("datasets"))
            start = self._start(request, subscriber)
        except StreamRefused as exc:
            if exc.status in (401, 429):
                SSE_STREAMS_REFUSED.labels(exc.reason).inc()
            await refusal_response(exc)(scope, receive, send)
            return
        except ResumeIdRefused as exc:
            refused = StreamRefused(exc.status, exc.reason, str(exc))
            await refusal_response(refused)(scope, receive, send)
            return
        self._open[subscriber] += 1
        try:
            await self._open_feed(holder, datasets, start, scope, receive, send)
        finally:
            self._open[subscriber] -= 1
            if not self._open[subscriber]:
                del self._open[subscriber]

    async def _open_feed(
        self,
        holder: Holder,
        datasets: frozenset[str] | None,
        start: Start,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Start the client's feed, then stream it; 503 if the broker does not answer."""
        subscriber = holder.principal
        feed = ClientFeed(
            self._settings,
            self._schemas,
            self._ids,
            subscriber,
            datasets,
            start,
            self._feed_options,
        )
        feed.start()
        try:
            first = await feed.next(self._options.start_timeout)
            if not isinstance(first, Chunk):
                reason = first.reason if first else "the broker did not answer in time"
                log.warning("cannot start the stream of %s: %s", subscriber, reason)
                refused = StreamRefused(503, "unavailable", f"{reason}; retry shortly")
                await refusal_response(refused)(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            SSE_CLIENTS.labels(subscriber).inc()
            try:
                await self._serve(holder, feed, first, receive, send)
            finally:
                SSE_CLIENTS.labels(subscriber).dec()
        finally:
            await feed.close()

    async def _serve(
        self, holder: Holder, feed: ClientFeed, first: Chunk, receive: Receive, send: Send
    ) -> None:
        """Send until the client goes, is cut off, its token is revoked, or the feed stops."""
        subscriber = holder.principal
        sending = asyncio.create_task(self._send_feed(subscriber, feed, first, send))
        leaving = asyncio.create_task(_disconnect(receive))
        revoked = asyncio.create_task(self._revocation(holder))
        tasks = (sending, leaving, revoked)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if revoked.done() and not revoked.cancelled():
            SSE_STREAMS_ENDED_REVOKED.labels(subscriber).inc()
            log.warning(
                "ended a stream of %s: its token %s was revoked", subscriber, holder.token_id
            )
            try:
                async with asyncio.timeout(1):
                    await send({"type": "http.response.body", "body": _REVOKED, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except TimeoutError:  # a client that takes nothing loses its connection all the same
                _drop_connection(send)
            return
        if sending.cancelled():
            return  # the client went
        if sending.result() == "slow":
            SSE_CLIENTS_CUT_OFF.labels(subscriber).inc()
            log.warning(
                "cut off a client of %s: it took no data for %.0f s",
                subscriber,
                self._options.slow_client_timeout,
            )
            _drop_connection(send)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_feed(self, subscriber: str, feed: ClientFeed, first: Chunk, send: Send) -> str:
        """Send the feed's chunks, heartbeats when idle; "slow" if the client stopped taking
        data, "ended" if the feed stopped."""
        if not await self._send(send, first.body):
            return "slow"
        latency = END_TO_END_LATENCY.labels(subscriber, CONNECTOR)
        while True:
            item = await feed.next(self._options.heartbeat_interval)
            if item is None:
                if not await self._send(send, _HEARTBEAT):
                    return "slow"
                continue
            if isinstance(item, FeedFailed):
                log.warning("the stream of %s ended: %s", subscriber, item.reason)
                return "ended"
            if not await self._send(send, item.body):
                return "slow"
            now = time.time()
            for dataset, count in Tally(d for d, _ in item.events).items():
                EVENTS_DELIVERED.labels(subscriber, dataset, CONNECTOR).inc(count)
            for _, event_time in item.events:
                latency.observe(max(0.0, now - event_time))

    async def _send(self, send: Send, body: bytes) -> bool:
        """Send ``body``; False if the client took no data for ``slow_client_timeout``
        seconds (the server waits for room in the connection's buffers before writing)."""
        try:
            async with asyncio.timeout(self._options.slow_client_timeout):
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except TimeoutError:
            return False
        return True

    async def _revocation(self, holder: Holder) -> None:
        """Returns once the stream's token is no longer in force (revoked, or expired after a
        rotation)."""
        while self._tokens.is_valid(holder.token_id):
            await asyncio.sleep(self._options.reload_interval)


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _healthz(_: Request) -> JSONResponse:
    """Liveness: the service answers."""
    return JSONResponse({"status": "ok"})


def build_stream_service(
    settings: BusSettings,
    tokens: TokenFile,
    secret: bytes,
    options: StreamSettings | None = None,
) -> StreamService:
    """The live stream's ASGI app: subscribers known by ``tokens``, resume ids signed with
    ``secret``."""
    return StreamService(settings, tokens, secret, options or StreamSettings())
