"""A registry that does not answer is not a bad record: the engine retries instead of
dead-lettering; an unknown schema id is a bad record."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from xbus.core.errors import RegistryUnavailable
from xbus.core.serde import Undecodable, WriterSchemas

WIRE = b"\x00\x00\x00\x00\x07" + b"body"


class _Registry:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_schema(self, schema_id: int) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        SchemaRegistryError(503, 50301, "unavailable"),
    ],
)
def test_an_unanswering_registry_is_retriable(error: Exception) -> None:
    with pytest.raises(RegistryUnavailable):
        WriterSchemas(_Registry(error)).decode(WIRE)  # type: ignore[arg-type]


def test_an_unknown_schema_id_is_a_dead_letter() -> None:
    with pytest.raises(Undecodable) as found:
        WriterSchemas(_Registry(SchemaRegistryError(404, 40403, "not found"))).decode(  # type: ignore[arg-type]
            WIRE
        )
    assert found.value.reason == "unknown_schema_id"


@pytest.mark.parametrize("value", [None, b"", b'{"json": true}', b"\x01\x00\x00\x00\x01x"])
def test_bytes_not_in_the_wire_format_are_dead_letters(value: bytes | None) -> None:
    with pytest.raises(Undecodable) as found:
        WriterSchemas(_Registry(AssertionError("not called"))).decode(value)  # type: ignore[arg-type]
    assert found.value.reason == "not_wire_format"
