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
from typing import Any

import httpx

from consumers.delivery import Delivery
from consumers.exceptions import DeliveryRefused, TargetUnavailable
from consumers.runtime import Position
from consumers.signing import SIGNATURE_HEADER, sign
from xbus.values import to_json

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


class WebhookSink:
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
        client: httpx.Client | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        self.url = url
        self.batch_size = max(1, batch_size)
        self._secret = secret
        self._client = client or httpx.Client(
            timeout=timeout, headers={"User-Agent": "xbus-webhook/0.1"}
        )

    def deliver(self, batch: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """POST the batch in order; stop at the first retriable failure, saying how many
        events went through."""
        refused: list[tuple[Delivery, DeliveryRefused]] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            problem = self._post(chunk)
            if isinstance(problem, TargetUnavailable):
                problem.done = start
                raise problem
            if problem is not None:
                refused.extend((d, problem) for d in chunk)
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
        self._client.close()


def _excerpt(response: httpx.Response) -> str:
    text: Any = response.text
    return str(text)[:200].replace("\n", " ")
