"""Reading topics back the way any Confluent-compatible client would."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from xbus.core.settings import BusSettings


def end_offsets(settings: BusSettings, topic: str) -> dict[int, int]:
    """The high watermark of each partition of ``topic`` (0 where it has none yet)."""
    consumer = Consumer(settings.consumer_config(f"offsets-{uuid.uuid4()}"))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        }
    finally:
        consumer.close()


def read_events(
    settings: BusSettings, topic: str, event_ids: set[str], timeout: float = 60.0
) -> dict[str, tuple[bytes | None, dict[str, Any]]]:
    """``{event_id: (key, decoded value)}`` for the given events, decoded with the stock
    ``AvroDeserializer`` and nothing but the registry's URL and credentials."""
    consumer = Consumer(settings.consumer_config(f"reader-{uuid.uuid4()}"))
    decode = AvroDeserializer(SchemaRegistryClient(settings.registry_config()))
    context = SerializationContext(topic, MessageField.VALUE)
    found: dict[str, tuple[bytes | None, dict[str, Any]]] = {}
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not event_ids <= found.keys():
            for message in consumer.consume(500, timeout=0.5):
                if message.error() or message.value() is None:
                    continue
                event = decode(message.value(), context)
                if str(event["event_id"]) in event_ids:
                    found[str(event["event_id"])] = (message.key(), event)
    finally:
        consumer.close()
    return found
