"""The change-event envelope that wraps every dataset record on the bus.

Its contract is ``resources/envelope.avsc``, shipped inside ``xbus.core``: a Debezium-like
record of ``event_id``, ``department``, ``dataset``, ``op``, ``ts_ms``, ``before``, ``after``
and ``source``, in which ``before`` and ``after`` name the placeholder ``xbus.DatasetRecord``.
Each dataset's envelope replaces it with the dataset's record; a subscriber's envelope with
its view of the record.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import uuid
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, TypedDict

from xbus.core.avro_names import defined_name
from xbus.core.errors import CatalogError

RECORD_PLACEHOLDER = "xbus.DatasetRecord"
RECORD_FIELDS = ("before", "after")


class Op(StrEnum):
    """What happened to the record."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SNAPSHOT = "SNAPSHOT"


Record = dict[str, Any]
"""A dataset record (or a subscriber's view of one): field name to Python value."""


class Source(TypedDict):
    """Where an event was published from."""

    system: str
    origin: str
    trace_id: str | None


class ChangeEvent(TypedDict):
    """A change event as the encoder takes it and as the envelope schema decodes it.

    ``ts_ms`` is epoch milliseconds when an event is made, and a timezone-aware
    ``datetime`` once decoded (the field's logical type is ``timestamp-millis``)."""

    event_id: str
    department: str
    dataset: str
    op: str
    ts_ms: int | dt.datetime
    before: Record | None
    after: Record | None
    source: Source


@lru_cache(maxsize=8)
def load_envelope(path: Path | None = None) -> dict[str, Any]:
    """The envelope template at ``path`` (default: the one shipped with xbus), checked to
    carry the record placeholder."""
    if path is None:
        path = Path(str(files("xbus.core").joinpath("resources", "envelope.avsc")))
    try:
        template: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the envelope schema: {exc}") from exc
    for name in RECORD_FIELDS:
        field = next((f for f in template["fields"] if f["name"] == name), None)
        if field is None or field["type"] != ["null", RECORD_PLACEHOLDER]:
            raise CatalogError(
                f'{path}: field {name!r} must have type ["null", "{RECORD_PLACEHOLDER}"]'
            )
    return template


def record_of(envelope: dict[str, Any]) -> dict[str, Any]:
    """The dataset record inside a dataset's envelope schema (the ``before`` branch)."""
    before = next(f for f in envelope["fields"] if f["name"] == "before")
    record: dict[str, Any] = before["type"][1]
    return record


def record_full_name(record_schema: dict[str, Any]) -> str:
    """The full name of a record schema (its namespace and name)."""
    return defined_name(record_schema, "xbus")


def with_union_branches(event: Mapping[str, Any], record_name: str) -> dict[str, Any]:
    """The event with ``before`` and ``after`` marked as the record branch of their unions,
    so the encoder writes them without trying each branch (several times faster)."""
    before, after = event["before"], event["after"]
    return {
        **event,
        "before": None if before is None else (record_name, before),
        "after": None if after is None else (record_name, after),
    }


def envelope_schema(
    record_schema: dict[str, Any], template: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    """The envelope ``template`` with ``before`` and ``after`` of type ``record_schema``, named
    ``name`` (default: the template's) in the record's namespace."""
    record = copy.deepcopy(record_schema)
    namespace = record.get("namespace", "xbus")
    full_name = record_full_name(record)
    envelope = copy.deepcopy(template)
    envelope["name"] = f"{namespace}.{name or template['name']}"
    envelope.pop("namespace", None)
    for field in envelope["fields"]:
        if field["name"] == "before":
            field["type"] = ["null", record]  # defined here once...
        elif field["name"] == "after":
            field["type"] = ["null", full_name]  # ...and referred to by name here
    _qualify_names(envelope, template.get("namespace", "xbus"))
    return envelope


def _qualify_names(envelope: dict[str, Any], namespace: str) -> None:
    """Give the template's own named types (Op, Source) their full names, since the envelope
    now lives in the record's namespace."""
    for field in envelope["fields"]:
        kind = field["type"]
        if (
            isinstance(kind, dict)
            and kind.get("type") in ("enum", "record")
            and "." not in kind["name"]
        ):
            kind.setdefault("namespace", namespace)


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
    event_id: str | None = None,
) -> ChangeEvent:
    """A change event; ``event_id`` defaults to a fresh uuid and ``ts_ms`` to now."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "department": department,
        "dataset": dataset,
        "op": op.value,
        "ts_ms": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "before": before,
        "after": after,
        "source": {"system": system, "origin": origin, "trace_id": trace_id},
    }
