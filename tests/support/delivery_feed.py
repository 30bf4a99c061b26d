"""Subscriber-view events written straight to a ``deliver.<subscriber>.<dataset>`` topic, the
way the engine writes them (registered view schema, Confluent wire format, keyed by the
business key, event-id header), so connector tests can offer tens of thousands of events
quickly and know exactly what was offered."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema

from xbus.core.admin import ensure_topics
from xbus.core.envelope import (
    Op,
    envelope_schema,
    load_envelope,
    record_full_name,
    with_union_branches,
)
from xbus.core.serde import WireEncoder, registry_client
from xbus.core.settings import BusSettings
from xbus.core.topics import delivery_topic, value_subject


def licence_view(subscriber: str) -> dict[str, Any]:
    """A subscriber's view of business licences: a few fields of the common logical types."""
    return {
        "type": "record",
        "name": "BusinessLicenceView",
        "namespace": f"xbus.view.{subscriber}",
        "fields": [
            {"name": "credit_code", "type": "string"},
            {"name": "name", "type": "string"},
            {
                "name": "registered_capital",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2},
            },
            {"name": "issued_on", "type": {"type": "int", "logicalType": "date"}},
            {"name": "employees", "type": ["null", "int"], "default": None},
            {"name": "district", "type": ["null", "string"], "default": None},
        ],
    }


def licence(n: int, version: int = 0) -> dict[str, Any]:
    """Record ``n`` of the feed in its ``version``-th state."""
    return {
        "credit_code": f"91310115MA{n:08d}",
        "name": f"上海测试{n}号有限公司",
        "registered_capital": decimal.Decimal(f"{100000 + n}.{version % 100:02d}"),
        "issued_on": dt.date(2024, 1, 1) + dt.timedelta(days=n % 365),
        "employees": None if n % 3 == 0 else n % 500 + version,
        "district": None if n % 5 == 0 else "浦东新区",
    }


@dataclass
class DeliveryFeed:
    """Writes view events of one subscriber and dataset; ``sent`` keeps them in order."""

    settings: BusSettings
    subscriber: str
    dataset: str = "business_licence"
    partitions: int = 3
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topic = delivery_topic(self.subscriber, self.dataset)
        ensure_topics(self.settings, {self.topic: self.partitions})
        record = licence_view(self.subscriber)
        schema = envelope_schema(record, load_envelope(), "BusinessLicenceEvent")
        schema_id = registry_client(self.settings).register_schema(
            value_subject(self.topic), Schema(json.dumps(schema), "AVRO")
        )
        self._encoder = WireEncoder(schema_id, schema)
        self._record_name = record_full_name(record)
        self._producer = Producer(self.settings.producer_config())

    def send(
        self,
        key: str,
        op: Op,
        after: dict[str, Any] | None,
        before: dict[str, Any] | None = None,
        *,
        ts_ms: int | None = None,
    ) -> dict[str, Any]:
        """Queue one event (flush() waits for Kafka); returns the event as offered."""
        event: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "department": "market_regulation",
            "dataset": self.dataset,
            "op": op.value,
            "ts_ms": ts_ms
            if ts_ms is not None
            else int(dt.datetime.now(dt.UTC).timestamp() * 1000),
            "before": before,
            "after": after,
            "source": {"system": "feed", "origin": "sdk", "trace_id": None},
        }
        value = self._encoder.encode(with_union_branches(event, self._record_name))
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=key.encode(),
                    headers=[("xbus-event-id", event["event_id"].encode())],
                )
                break
            except BufferError:
                self._producer.poll(0.01)
        self.sent.append({**event, "key": key})
        return event

    def create_licences(self, count: int) -> list[dict[str, Any]]:
        """Queue a CREATE of licence ``n`` under key ``k<n>`` for n < count, and wait for
        Kafka to have them all; returns the events as offered."""
        events = [self.send(f"k{n}", Op.CREATE, licence(n)) for n in range(count)]
        self.flush()
        return events

    def send_raw(self, key: str, value: bytes) -> None:
        """Queue bytes that are not a subscriber view (for dead-letter tests)."""
        self._producer.produce(self.topic, value=value, key=key.encode())

    def flush(self) -> None:
        """Wait until Kafka has every queued event."""
        assert self._producer.flush(60) == 0, "the feed's events were not acknowledged"
