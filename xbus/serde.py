"""Avro serialisation in the Confluent wire format (magic byte, schema id, Avro body).

Serialisers and deserialisers follow confluent-kafka's ``__call__(obj, ctx)`` contract, so
they plug into any confluent client; the registry client caches schemas by id.
"""

from __future__ import annotations

import json
from typing import Any, cast

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from xbus.settings import BusSettings


def registry_client(settings: BusSettings) -> SchemaRegistryClient:
    """A client of the bus's schema registry."""
    return SchemaRegistryClient(settings.registry_config())


class EventSerializer:
    """Encodes change events with one Avro schema, registered under the topic's value subject
    on first use (``auto_register``) or looked up there."""

    def __init__(
        self, registry: SchemaRegistryClient, schema: dict[str, Any], *, auto_register: bool = True
    ) -> None:
        self._inner = AvroSerializer(
            registry,
            json.dumps(schema),
            conf={"auto.register.schemas": auto_register, "use.latest.version": False},
        )

    def __call__(self, event: dict[str, Any], ctx: SerializationContext) -> bytes:
        """The event in the Confluent wire format."""
        return cast(bytes, self._inner(event, ctx))


class EventDeserializer:
    """Decodes each message with the writer schema its id names (parsed once per id)."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self._inner = AvroDeserializer(registry)

    def __call__(self, data: bytes, ctx: SerializationContext) -> dict[str, Any]:
        """The decoded event: logical types as Python values (uuid, datetime, Decimal...)."""
        return cast(dict[str, Any], self._inner(data, ctx))


def value_context(topic: str) -> SerializationContext:
    """The serialization context of a value on ``topic``."""
    return SerializationContext(topic, MessageField.VALUE)
