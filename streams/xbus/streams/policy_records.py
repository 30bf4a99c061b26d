"""What the policy topics hold, record by record: the codec of the office's grants and of the
reference tables' entries, apart from any Kafka client.

``_xbus.grants`` (compacted): key = the grant's id, value = ``{"grant": {...}, "version": n}``
(JSON, the grant without its defaults); a tombstone revokes it. ``_xbus.reference.<table>``
(compacted): key = a code, value = the JSON string it maps to; a tombstone removes it.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pydantic import ValidationError

from xbus.core.errors import SerializationError
from xbus.streams.grants import Grant


class StoredGrant(NamedTuple):
    """A grant as the grants topic holds it, with its version."""

    grant: Grant
    version: int


def grant_key(grant_id: str) -> bytes:
    """The key of a grant's records: its id."""
    return grant_id.encode()


def grant_value(grant: Grant, version: int) -> bytes:
    """How version ``version`` of ``grant`` is stored."""
    return json.dumps(
        {"grant": grant.model_dump(mode="json", exclude_defaults=True), "version": version},
        ensure_ascii=False,
    ).encode()


def decode_grant(value: bytes) -> StoredGrant:
    """The grant and version in a grants-topic value; raises ``SerializationError``
    (``unreadable_grant``) if it holds no valid grant."""
    try:
        stored = json.loads(value)
        return StoredGrant(Grant.model_validate(stored["grant"]), int(stored["version"]))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise SerializationError("unreadable_grant", f"not a stored grant: {exc}") from exc


def entry_value(value: object) -> bytes:
    """How an entry of a reference table is stored: the text it maps to, as JSON."""
    return json.dumps(str(value), ensure_ascii=False).encode()


def decode_entry(value: bytes) -> str:
    """The text a reference-table value maps to; raises ``SerializationError``
    (``unreadable_entry``) if it is not JSON."""
    try:
        return str(json.loads(value))
    except ValueError as exc:
        raise SerializationError("unreadable_entry", f"not a reference entry: {exc}") from exc
