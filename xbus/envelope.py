"""The change-event envelope that wraps every dataset record on the bus.

A Debezium-like record: ``event_id``, ``department``, ``dataset``, ``op``, ``ts_ms``,
``before``, ``after`` (the dataset record or null) and ``source`` metadata. The same
envelope wraps a subscriber's view of a record on ``deliver.*`` topics.
"""

from __future__ import annotations

import copy
import time
import uuid
from enum import StrEnum
from typing import Any


class Op(StrEnum):
    """What happened to the record."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SNAPSHOT = "SNAPSHOT"


SOURCE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Source",
    "namespace": "xbus",
    "doc": "Where the event came from.",
    "fields": [
        {"name": "system", "type": "string", "doc": "The publishing system or service."},
        {
            "name": "origin",
            "type": "string",
            "doc": "How it entered the bus: sdk, gateway or demo.",
        },
        {"name": "trace_id", "type": ["null", "string"], "default": None},
    ],
}


def envelope_schema(record_schema: dict[str, Any], name: str = "ChangeEvent") -> dict[str, Any]:
    """The Avro schema of a change event whose ``before`` and ``after`` are ``record_schema``."""
    record = copy.deepcopy(record_schema)
    namespace = record.get("namespace", "xbus")
    # The record is defined once, in ``before``; ``after`` refers to it by its full name.
    full_name = record["name"] if "." in record["name"] else f"{namespace}.{record['name']}"
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "doc": f"A change event of {namespace}.{record['name']}.",
        "fields": [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "department", "type": "string"},
            {"name": "dataset", "type": "string"},
            {
                "name": "op",
                "type": {"type": "enum", "name": "Op", "namespace": "xbus", "symbols": list(Op)},
            },
            {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "before", "type": ["null", record], "default": None},
            {"name": "after", "type": ["null", full_name], "default": None},
            {"name": "source", "type": SOURCE_SCHEMA},
        ],
    }


def change_event(
    *,
    department: str,
    dataset: str,
    op: Op,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    system: str,
    origin: str = "sdk",
    trace_id: str | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    """A new change event with a fresh ``event_id``; ``ts_ms`` defaults to now."""
    return {
        "event_id": str(uuid.uuid4()),
        "department": department,
        "dataset": dataset,
        "op": op.value,
        "ts_ms": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "before": before,
        "after": after,
        "source": {"system": system, "origin": origin, "trace_id": trace_id},
    }
