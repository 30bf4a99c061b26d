"""A department's stream of changes for the fault suite: creates, updates and deletes over a
fixed set of business licences, published at a steady rate through the Publisher SDK or the
ingest gateway, recording every event Kafka acknowledged, in order, so the suite can say what
each subscriber must end up with."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from xbus.core.envelope import Op
from xbus.core.errors import XbusError
from xbus.core.values import to_json
from xbus.producers.publisher import EventSpec, Publisher


def licence_grant(folder: Path, subscriber: str, purpose: str) -> Path:
    """A grant file giving ``subscriber`` three fields of every business licence change."""
    path = folder / f"{subscriber}.yaml"
    path.write_text(
        f"grant: {subscriber.replace('_', '-')}-licences\nsubscriber: {subscriber}\n"
        f"dataset: market_regulation.business_licence\npurpose: {purpose}\n"
        "legal_basis: test\napproval: TEST-1\nvalid_from: 2026-01-01T00:00:00+08:00\n"
        "fields:\n  credit_code: {}\n  name: {}\n  registered_capital: {}\n"
    )
    return path


@dataclass(frozen=True)
class Sent:
    """One event Kafka acknowledged."""

    event_id: str
    key: str
    op: Op
    name: str | None  # the licence's name after the change; None for a delete
    ts_ms: int
    at: float  # when it was acknowledged (time.monotonic)


@dataclass
class Stream:
    """Changes to ``licences`` (each a full record; its credit code is the key): the first
    change of a key creates it, then 85% updates (a new name each), 10% deletes and 5% creates
    after a delete. ``chunk`` events go out together and are waited for."""

    licences: list[dict[str, Any]]
    seed: int
    ts_base: int
    chunk: int = 20
    keep: bool = True  # False: count the acknowledged events, keep none (a long soak)
    count: int = 0
    acknowledged: list[Sent] = field(default_factory=list)
    retried: set[str] = field(default_factory=set)  # keys with an event sent more than once
    refusals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._alive: dict[str, bool] = {}
        self._serial = 0

    def next_chunk(self) -> list[tuple[EventSpec, Sent]]:
        """The next ``chunk`` changes, each as the spec to publish and what it will be once
        acknowledged; never two of one key in a chunk (they are published concurrently)."""
        out: list[tuple[EventSpec, Sent]] = []
        keys: set[str] = set()
        while len(out) < self.chunk:
            record = dict(self._random.choice(self.licences))
            key = str(record["credit_code"])
            if key in keys:
                continue
            keys.add(key)
            self._serial += 1
            ts_ms = self.ts_base + self._serial
            event_id = str(uuid.uuid4())
            record["name"] = f"{record['name']}·第{self._serial}版"
            alive = self._alive.get(key, False)
            roll = self._random.random()
            if not alive:
                op, after, before = Op.CREATE, record, None
            elif roll < 0.10:
                op, after, before = Op.DELETE, None, record
            else:
                op, after, before = Op.UPDATE, record, record
            self._alive[key] = op is not Op.DELETE
            spec = EventSpec(op, after=after, before=before, ts_ms=ts_ms, event_id=event_id)
            name = None if after is None else str(after["name"])
            out.append((spec, Sent(event_id, key, op, name, ts_ms, 0.0)))
        return out

    def record(self, sent: list[Sent]) -> None:
        now = time.monotonic()
        with self.lock:
            self.count += len(sent)
            if self.keep:
                self.acknowledged.extend(
                    Sent(s.event_id, s.key, s.op, s.name, s.ts_ms, now) for s in sent
                )

    def run(
        self,
        send: Callable[[list[EventSpec]], None],
        total: int,
        rate: float,
        stop: threading.Event,
    ) -> None:
        """Publish ``total`` events at ``rate`` events/s through ``send``, which returns once
        Kafka acknowledged the whole chunk or raises a retriable ``XbusError``; a refused
        chunk is sent again, the same events with the same ids, until it is taken."""
        started = time.monotonic()
        done = 0
        while done < total and not stop.is_set():
            chunk = self.next_chunk()
            while not stop.is_set():
                try:
                    send([spec for spec, _ in chunk])
                    break
                except (XbusError, httpx.HTTPError) as error:
                    if isinstance(error, XbusError) and not error.retriable:
                        raise
                    self.refusals += 1
                    self.retried.update(s.key for _, s in chunk)
                    stop.wait(1.0)
            else:
                return
            self.record([s for _, s in chunk])
            done += len(chunk)
            ahead = started + done / rate - time.monotonic()
            if ahead > 0:
                stop.wait(ahead)


def through_sdk(publisher: Publisher) -> Callable[[list[EventSpec]], None]:
    """Send a chunk with the Publisher SDK (all or nothing as far as checks go)."""
    return lambda specs: (publisher.publish_batch("business_licence", specs), None)[1]


class GatewayRefused(XbusError):
    """The gateway answered a retriable refusal (503, 429)."""

    retriable = True


def through_gateway(url: str, key: str) -> Callable[[list[EventSpec]], None]:
    """Send a chunk as one batch to the ingest gateway with the department's key."""
    client = httpx.Client(timeout=120)

    def send(specs: list[EventSpec]) -> None:
        body = {
            "events": [
                {
                    "op": s.op.value,
                    "after": s.after,
                    "before": s.before,
                    "ts_ms": s.ts_ms,
                    "event_id": s.event_id,
                }
                for s in specs
            ]
        }
        response = client.post(
            f"{url}/v1/datasets/market_regulation/business_licence/events/batch",
            content=to_json(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        if response.status_code in (429, 503):
            raise GatewayRefused(f"{response.status_code}: {response.text}")
        if response.status_code != 202:
            raise AssertionError(
                f"the gateway refused a batch: {response.status_code} {response.text}"
            )

    return send
