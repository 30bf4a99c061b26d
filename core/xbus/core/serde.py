"""Avro serialisation in the Confluent wire format (magic byte, schema id, Avro body).

Serialisers and deserialisers follow confluent-kafka's ``__call__(obj, ctx)`` contract, so
they plug into any confluent client; the registry client caches schemas by id.
"""

from __future__ import annotations

import io
import json
from typing import Any, Protocol, cast

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from xbus.core.errors import RegistryUnavailable, SerializationError
from xbus.core.settings import BusSettings


def registry_client(settings: BusSettings) -> SchemaRegistryClient:
    """A client of the bus's schema registry."""
    return SchemaRegistryClient(settings.registry_config())


def registry_rest_of(registry: SchemaRegistryClient) -> tuple[str, Any]:
    """The (first) URL ``registry`` talks to and its HTTP session (which carries the client's
    credentials and TLS settings), for calls its API lacks; confluent-kafka keeps both on its
    REST client and offers no public accessor."""
    rest = registry._rest_client
    return str(rest.base_urls[0]), rest.session


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
        # The wire format's prefix: magic byte and schema id.
        self.header = b"\x00" + schema_id.to_bytes(4, "big")
        self._parsed = fastavro.parse_schema(schema)

    def encode(self, value: dict[str, Any]) -> bytes:
        """Magic byte, schema id, Avro body."""
        buffer = io.BytesIO()
        buffer.write(self.header)
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


class Undecodable(SerializationError):
    """A source record that is not a change event this bus can read (it goes to the dead
    letters with its ``reason``)."""


class EventDecoder(Protocol):
    """Turns a source record's bytes into a change event, or raises ``Undecodable``."""

    def decode(self, value: bytes | None) -> dict[str, Any]: ...


class WriterSchemas:
    """Writer schemas by id, fetched from the registry and parsed once each: the decoder of
    the engine and of every connector."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self._registry = registry
        self._schemas: dict[int, dict[str, Any]] = {}
        self._parsed: dict[int, Any] = {}

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The writer schema registered under ``schema_id``; raises ``Undecodable`` if the
        registry has none, ``RegistryUnavailable`` if it does not answer."""
        found = self._schemas.get(schema_id)
        if found is None:
            try:
                schema = self._registry.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise Undecodable("unknown_schema_id", f"schema id {schema_id}: {exc}") from exc
                raise RegistryUnavailable(f"reading schema id {schema_id}: {exc}") from exc
            except Exception as exc:  # refused or timed out: try again, never a dead letter
                raise RegistryUnavailable(f"reading schema id {schema_id}: {exc}") from exc
            found = json.loads(schema.schema_str or "{}")
            self._schemas[schema_id] = found
        return found

    @staticmethod
    def schema_id(value: bytes | None) -> int:
        """The schema id of a value in the Confluent wire format; raises ``Undecodable`` if it
        is not one."""
        if value is None or len(value) < 5 or value[0] != 0:
            raise Undecodable(
                "not_wire_format", "not in the Confluent wire format (magic byte 0 and a schema id)"
            )
        return int.from_bytes(value[1:5], "big")

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The decoded value: logical types as Python values (uuid, datetime, Decimal...)."""
        schema_id = self.schema_id(value)
        assert value is not None
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = fastavro.parse_schema(self.schema(schema_id))
            self._parsed[schema_id] = parsed
        try:
            event = cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed))
        except Exception as exc:  # truncated or foreign bytes
            raise Undecodable(
                "undecodable", f"Avro body does not match schema {schema_id}: {exc}"
            ) from exc
        return event
