"""A subscriber's webhook endpoint for tests: a real HTTP server on loopback that checks
each request's signature with the subscriber SDK, processes each idempotency key once, and
can be told to fail for a while."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xbus.consumers.exceptions import WebhookSignatureError
from xbus.consumers.sinks.signing import SIGNATURE_HEADER, verify_webhook


@dataclass
class Receiver:
    """What the endpoint saw; set ``fail_with`` (a status) to make it refuse requests."""

    secret: bytes
    fail_with: int | None = None
    retry_after: str | None = None
    refuse_event_ids: set[str] = field(default_factory=set)
    # After refusing a request, answer 503 to this many more (a target that then goes down).
    fail_after_refusal: int = 0
    # Seconds each answer takes, like an endpoint across a network that does some work.
    delay: float = 0.0
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrivals: Counter[str] = field(default_factory=Counter)
    arrival_times: dict[str, float] = field(default_factory=dict)
    bad_signatures: int = 0
    failed_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, body: bytes, headers: Any) -> tuple[int, dict[str, str]]:
        try:
            verify_webhook(body, headers.get(SIGNATURE_HEADER), self.secret)
        except WebhookSignatureError:
            with self.lock:
                self.bad_signatures += 1
            return 401, {}
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if self.fail_with is not None:
                self.failed_requests += 1
                status = self.fail_with
                if self.fail_after_refusal:
                    self.fail_after_refusal -= 1
                    if not self.fail_after_refusal:
                        self.fail_with = None
                return status, ({"Retry-After": self.retry_after} if self.retry_after else {})
            payload = json.loads(body)
            events = payload.get("events", [payload])
            if any(e["event_id"] in self.refuse_event_ids for e in events):
                if self.fail_after_refusal:
                    self.fail_with = 503
                return 422, {}
            now = time.time()
            for e in events:
                self.arrivals[e["event_id"]] += 1
                # Idempotent processing, as a subscriber would do it: once per event id.
                if e["event_id"] not in self.processed:
                    self.processed[e["event_id"]] = e
                    self.arrival_times[e["event_id"]] = now
        return 200, {}


@contextmanager
def webhook_receiver(secret: bytes, port: int = 0) -> Iterator[Receiver]:
    """A running receiver on ``port`` (0: any free one); its ``url`` takes POSTs."""
    receiver = Receiver(secret)

    connections: set[socket.socket] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.add(self.connection)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers = receiver.handle(body, self.headers)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/xbus"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        # Gone as a stopped process is: the connections kept alive close too.
        for connection in list(connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
