"""Avro serialisation in the Confluent wire format (magic byte, schema id, Avro body).

Serialisers and deserialisers follow confluent-kafka's ``__call__(obj, ctx)`` contract, so
they plug into any confluent client; the registry client and parsed schemas are cached.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from xbus.settings import BusSettings


def registry_client(settings: BusSettings) -> SchemaRegistryClient:
    """A client of the bus's schema registry."""
    return SchemaRegistryClient(settings.registry_config())


def event_serializer(
    registry: SchemaRegistryClient, schema: dict[str, Any], *, auto_register: bool = True
) -> AvroSerializer:
    """A serializer of change events written with ``schema`` (registered under the topic's subject)."""
    return AvroSerializer(
        registry,
        json.dumps(schema),
        conf={"auto.register.schemas": auto_register, "use.latest.version": False},
    )


def event_deserializer(registry: SchemaRegistryClient) -> AvroDeserializer:
    """A deserializer that reads each message with the writer schema its id names."""
    return AvroDeserializer(registry)


def value_context(topic: str) -> SerializationContext:
    """The serialization context of a value on ``topic``."""
    return SerializationContext(topic, MessageField.VALUE)
