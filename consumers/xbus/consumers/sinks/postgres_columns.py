"""Typed PostgreSQL columns for the fields of a subscriber-view record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from xbus.core.avro_names import NamedTypes
from xbus.core.errors import ConfigurationError
from xbus.core.values import to_json

_PRIMITIVES = {
    "string": "text",
    "int": "integer",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "boolean": "boolean",
    "bytes": "bytea",
}
_LOGICAL = {
    "date": "date",
    "time-millis": "time",
    "time-micros": "time",
    "timestamp-millis": "timestamptz",
    "timestamp-micros": "timestamptz",
    "local-timestamp-millis": "timestamp",
    "local-timestamp-micros": "timestamp",
    "uuid": "uuid",
}
RESERVED_PREFIX = "_xbus_"


@dataclass(frozen=True)
class Column:
    """One field of the view as a column: its SQL type and how a decoded value is passed."""

    name: str
    sql_type: str
    adapt: Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _as_json(value: Any) -> Any:
    return None if value is None else Jsonb(value, dumps=to_json)


def _column_type(avro: Any, named: NamedTypes) -> tuple[str, Callable[[Any], Any]]:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) == 1:
            return _column_type(branches[0], named)
        return "jsonb", _as_json
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro], _same
        found = named.lookup(avro)
        if found is not None:
            return _column_type(found, named)
        raise ConfigurationError(f"the view schema refers to an unknown type {avro!r}")
    logical = avro.get("logicalType")
    if logical == "decimal":
        return f"numeric({avro['precision']},{avro.get('scale', 0)})", _same
    if logical in _LOGICAL:
        return _LOGICAL[logical], _same
    kind = avro["type"]
    if kind in ("record", "array", "map"):
        return "jsonb", _as_json
    if kind == "enum":
        return "text", _same
    if kind == "fixed":
        return "bytea", _same
    return _column_type(kind, named)


def view_record(view_schema: dict[str, Any]) -> dict[str, Any]:
    """The record inside a subscriber-view envelope (the ``after`` field's record type)."""
    before = next(f for f in view_schema["fields"] if f["name"] == "before")
    record: dict[str, Any] = next(b for b in before["type"] if b != "null")
    return record


def columns_of(view_schema: dict[str, Any]) -> list[Column]:
    """One column per field of the view's record, in order; nested records, arrays, maps and
    unions of several types become jsonb."""
    record = view_record(view_schema)
    named = NamedTypes(view_schema)
    columns = []
    for field in record["fields"]:
        name = field["name"]
        if name.startswith(RESERVED_PREFIX):
            raise ConfigurationError(
                f"view field {name!r} starts with {RESERVED_PREFIX!r}, which the PostgreSQL "
                "sink keeps for its own columns; rename it in the grant"
            )
        sql_type, adapt = _column_type(field["type"], named)
        columns.append(Column(name, sql_type, adapt))
    return columns
