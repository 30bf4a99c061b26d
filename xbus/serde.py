"""Avro serialisation in the Confluent wire format (magic byte, schema id, Avro body).

Serialisers and deserialisers follow confluent-kafka's ``__call__(obj, ctx)`` contract, so
they plug into any confluent client; the registry client caches schemas by id.
"""

from __future__ import annotations

import io
import json
from typing import Any, cast

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from xbus.settings import BusSettings


def registry_client(settings: BusSettings) -> SchemaRegistryClient:
    """A client of the bus's schema registry."""
    return SchemaRegistryClient(settings.registry_config())


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


class WireEncoder:
    """Encodes values of one registered schema in the Confluent wire format, with the schema
    parsed once: the fast path the publisher and the engine use per event."""

    def __init__(self, schema_id: int, schema: dict[str, Any]) -> None:
        self.schema_id = schema_id
        self._header = b"\x00" + schema_id.to_bytes(4, "big")
        self._parsed = fastavro.parse_schema(schema)

    def encode(self, value: dict[str, Any]) -> bytes:
        """Magic byte, schema id, Avro body."""
        buffer = io.BytesIO()
        buffer.write(self._header)
        fastavro.schemaless_writer(buffer, self._parsed, value)
        return buffer.getvalue()


def registered_schema_id(
    registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]
) -> int | None:
    """The id under which ``schema`` is registered in ``subject``, or None if it is not."""
    try:
        found = registry.lookup_schema(subject, Schema(json.dumps(schema), "AVRO"))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise
    if found.schema_id is None:
        raise SchemaRegistryError(500, -1, f"the registry gave no id for {subject}")
    return int(found.schema_id)
