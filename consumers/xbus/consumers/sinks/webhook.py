"""The webhook sink: POSTs each subscriber-view event (or a batch of them) as JSON to the
subscriber's endpoint, signed, with the event id as idempotency key.

A 2xx means delivered. Timeouts, refused connections, 408, 425, 429 and 5xx mean "not now":
the runtime holds the partitions and retries (honouring Retry-After). Any other 4xx will not
change by retrying: that event goes to the subscriber's dead-letter topic.
"""

from __future__ import annotations

import email.utils
import hashlib
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from xbus.consumers.delivery import Delivery
from xbus.consumers.exceptions import DeliveryRefused, TargetUnavailable
from xbus.consumers.sinks.base import Position, Sink
from xbus.consumers.sinks.signing import SIGNATURE_HEADER, checked_secret, sign
from xbus.core.values import to_json

RETRIABLE_STATUSES = frozenset({408, 425, 429})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class WebhookSink(Sink):
    """Delivers to one URL with one signing secret; ``batch_size`` 1 sends one event per
    request, more sends ``{"events": [...]}`` of up to that many."""

    connector = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        batch_size: int = 1,
        timeout: float = 10.0,
        concurrency: int = 8,
        client: httpx.Client | None = None,
    ) -> None:
        checked_secret(secret)  # refuses to start without a strong secret
        self.url = url
        self.batch_size = max(1, batch_size)
        self._secret = secret
        self._client = client or httpx.Client(
            timeout=timeout,
            headers={"User-Agent": "xbus-webhook/0.1"},
            limits=httpx.Limits(max_connections=max(1, concurrency)),
        )
        self._pool = ThreadPoolExecutor(concurrency) if concurrency > 1 else None
        # What became of each event of the batch in hand: None delivered, else refused. It
        # outlives a failed attempt, so a retry sends only what is not settled yet.
        self._settled: dict[str, DeliveryRefused | None] = {}

    def deliver(self, batch: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """POST the batch: one event per request, different keys side by side and each
        key's events in order; or requests of ``batch_size`` events, in order. On a
        retriable failure, raise it saying how much of the batch's start is settled."""
        failures: list[TargetUnavailable] = []
        lanes = self._lanes(batch)
        if self._pool is not None and len(lanes) > 1:
            list(self._pool.map(lambda lane: self._send(lane, failures), lanes))
        else:
            for lane in lanes:
                self._send(lane, failures)
        if failures:
            failure = failures[0]
            done = 0
            while done < len(batch) and batch[done].event_id in self._settled:
                done += 1
            failure.done = done
            failure.refused = self._take(batch[:done])
            raise failure
        return self._take(batch)

    def _lanes(self, batch: list[Delivery]) -> list[list[list[Delivery]]]:
        """The requests to make, as lanes: each lane's requests go one after the other."""
        if self.batch_size > 1:
            chunks = [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
            return [chunks]
        by_key: dict[tuple[str, str], list[list[Delivery]]] = {}
        for d in batch:
            by_key.setdefault((d.dataset, d.key_text), []).append([d])
        return list(by_key.values())

    def _send(self, lane: list[list[Delivery]], failures: list[TargetUnavailable]) -> None:
        for chunk in lane:
            if failures:
                return  # the target is failing: leave the rest for the retry
            if all(d.event_id in self._settled for d in chunk):
                continue
            problem = self._post(chunk)
            if isinstance(problem, TargetUnavailable):
                failures.append(problem)
                return
            for d in chunk:
                self._settled[d.event_id] = problem

    def _take(self, deliveries: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """Forget ``deliveries``' outcomes, returning the refusals among them."""
        refused = []
        for d in deliveries:
            problem = self._settled.pop(d.event_id, None)
            if problem is not None:
                refused.append((d, problem))
        return refused

    def _post(self, chunk: list[Delivery]) -> TargetUnavailable | DeliveryRefused | None:
        if len(chunk) == 1 and self.batch_size == 1:
            d = chunk[0]
            body = to_json(d.event).encode()
            headers = {
                "Idempotency-Key": d.event_id,
                "X-Xbus-Subscriber": d.subscriber,
                "X-Xbus-Dataset": d.dataset,
                "X-Xbus-Key": urllib.parse.quote(d.key_text),
            }
        else:
            body = to_json({"events": [d.event for d in chunk]}).encode()
            ids = ",".join(d.event_id for d in chunk)
            headers = {
                # Each event carries its own event_id; this key names the whole request.
                "Idempotency-Key": hashlib.sha256(ids.encode()).hexdigest(),
                "X-Xbus-Subscriber": chunk[0].subscriber,
                "X-Xbus-Event-Count": str(len(chunk)),
            }
        headers["Content-Type"] = "application/json"
        headers[SIGNATURE_HEADER] = sign(body, self._secret)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return TargetUnavailable("timeout", f"{self.url} did not answer in time: {exc}")
        except httpx.TransportError as exc:
            return TargetUnavailable("connection", f"cannot reach {self.url}: {exc!r}")
        status = response.status_code
        if 200 <= status < 300:
            return None
        detail = f"{self.url} answered {status}: {_excerpt(response)}"
        if status in RETRIABLE_STATUSES or status >= 500:
            return TargetUnavailable(f"http_{status}", detail, retry_after=_retry_after(response))
        return DeliveryRefused(f"http_{status}", detail)

    def positions(self, partitions: list[Position]) -> dict[Position, int]:
        """Kafka's committed offsets decide where to start."""
        return {}

    def close(self) -> None:
        """Close the HTTP connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()


def _excerpt(response: httpx.Response) -> str:
    text: Any = response.text
    return str(text)[:200].replace("\n", " ")
