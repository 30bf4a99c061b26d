"""Change events as departments send them in JSON (to the ingest gateway, or in a file for
``xbus publish``):

    {"op": "CREATE", "after": {...}}
    {"op": "UPDATE", "before": {...}, "after": {...}, "ts_ms": 1764460800000}
    {"op": "DELETE", "before": {...}, "event_id": "0b6c...", "trace_id": "req-42"}

``ts_ms`` may also be an ISO 8601 date and time with an offset; ``event_id`` (a UUID) lets
a sender retry without creating a second event.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

from xbus.core.envelope import Op
from xbus.core.validation import FieldError
from xbus.producers.publisher import EventSpec

FIELDS = frozenset({"op", "after", "before", "ts_ms", "event_id", "trace_id"})
OPS = ", ".join(Op)


def loads(text: str | bytes) -> Any:
    """JSON with exact decimals: numbers with a fraction become ``Decimal``, not ``float``."""
    return json.loads(text, parse_float=decimal.Decimal)


def _ts_ms(value: Any, errors: list[FieldError], path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() * 1000)
    errors.append(
        FieldError(
            path,
            "expected milliseconds since the epoch or an ISO 8601 date and time with an offset",
        )
    )
    return None


def spec_from_json(obj: Any, prefix: str = "") -> tuple[EventSpec | None, list[FieldError]]:
    """The event described by one JSON object, or the problems with its envelope fields
    (its records are checked against the dataset later)."""
    errors: list[FieldError] = []
    if not isinstance(obj, dict):
        return None, [FieldError(prefix or "(event)", "expected a JSON object")]
    for extra in sorted(obj.keys() - FIELDS):
        errors.append(
            FieldError(
                f"{prefix}{extra}", f"unknown field; an event has {', '.join(sorted(FIELDS))}"
            )
        )
    op_text = obj.get("op")
    op = Op(op_text) if isinstance(op_text, str) and op_text in Op.__members__ else None
    if op is None:
        errors.append(FieldError(f"{prefix}op", f"expected one of {OPS}, got {op_text!r}"))
    records: dict[str, dict[str, Any] | None] = {}
    for name in ("before", "after"):
        value = obj.get(name)
        if value is not None and not isinstance(value, dict):
            errors.append(FieldError(f"{prefix}{name}", "expected an object or null"))
            value = None
        records[name] = value
    ts_ms = _ts_ms(obj.get("ts_ms"), errors, f"{prefix}ts_ms")
    event_id = obj.get("event_id")
    if event_id is not None:
        try:
            event_id = str(uuid.UUID(str(event_id)))
        except ValueError:
            errors.append(FieldError(f"{prefix}event_id", "expected a UUID"))
    trace_id = obj.get("trace_id")
    if trace_id is not None and not isinstance(trace_id, str):
        errors.append(FieldError(f"{prefix}trace_id", "expected a string"))
    if errors or op is None:
        return None, errors
    return EventSpec(op, records["after"], records["before"], ts_ms, event_id, trace_id), []
