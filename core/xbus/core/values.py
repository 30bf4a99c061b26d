"""Turning decoded Avro values into JSON and back."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def to_json(value: Any) -> str:
    """One line of JSON for a decoded Avro value: dates and times as ISO 8601, decimals as
    strings (no precision lost), bytes as base64."""
    return json.dumps(value, ensure_ascii=False, default=_default, separators=(",", ":"))
