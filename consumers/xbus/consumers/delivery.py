"""One event as a connector receives it from a subscriber topic: decoded, with where it came
from, so it can be delivered, dead-lettered, or resumed from."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message

from xbus.core.envelope import ChangeEvent
from xbus.core.serde import WriterSchemas
from xbus.core.topics import parse_delivery_topic


@dataclass(frozen=True)
class Delivery:
    """A decoded subscriber-view event, its writer schema, and its coordinates on
    ``deliver.<subscriber>.<dataset>``."""

    subscriber: str
    dataset: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    schema_id: int
    schema: dict[str, Any]
    event: ChangeEvent
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def event_id(self) -> str:
        """The id the event was published with: the idempotency key of every sink."""
        return str(self.event["event_id"])

    @property
    def key_text(self) -> str:
        """The business key the topic is keyed by, as text."""
        return (self.key or b"").decode("utf-8", errors="replace")

    @property
    def event_time(self) -> dt.datetime:
        """When the department says the change happened (the envelope's ``ts_ms``)."""
        ts = self.event["ts_ms"]
        if isinstance(ts, dt.datetime):
            return ts
        return dt.datetime.fromtimestamp(ts / 1000, dt.UTC)

    @property
    def record(self) -> dict[str, Any] | None:
        """The state after the change, or before it for a DELETE."""
        return self.event["after"] or self.event["before"]


def carries_record(message: Message, log: logging.Logger, who: str) -> bool:
    """True if ``message`` is a record; False for librdkafka's informational events (no
    topic matches yet, a broker briefly away: it recovers by itself), which are logged;
    raises on a fatal error."""
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    if error.code() not in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
        log.warning("%s: %s", who, error)
    return False


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """A message's headers as (name, bytes) pairs."""
    found: list[tuple[str, bytes]] = []
    for header in message.headers() or []:
        name, value = header[0], header[1]
        found.append((name, value.encode() if isinstance(value, str) else value or b""))
    return found


def decode(message: Message, schemas: WriterSchemas) -> Delivery:
    """The delivery a message carries; raises ``Undecodable`` for bytes that are not a
    subscriber view, ``RegistryUnavailable`` if the registry does not answer."""
    topic = message.topic() or ""
    subscriber, dataset = parse_delivery_topic(topic)
    value = message.value()
    schema_id = schemas.schema_id(value)
    # Only the engine writes deliver.* topics, always a subscriber's view envelope.
    event = cast(ChangeEvent, schemas.decode(value))
    assert value is not None
    return Delivery(
        subscriber=subscriber,
        dataset=dataset,
        topic=topic,
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=value,
        schema_id=schema_id,
        schema=schemas.schema(schema_id),
        event=event,
        headers=message_headers(message),
    )
