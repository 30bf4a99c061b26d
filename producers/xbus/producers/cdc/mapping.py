"""From a Debezium change record to a dataset's change event.

Debezium writes each row change of a PostgreSQL table as JSON (Kafka Connect's JsonConverter,
no embedded schema): ``op`` ``c``/``u``/``d``/``r`` (create, update, delete, snapshot read),
``before`` and ``after`` as column maps, and ``source`` with the commit time (``ts_ms``), the
change's LSN and its transaction. ``RowMapper`` turns one into the ``EventSpec`` the
Publisher SDK takes:

- the op by letter: c → CREATE, u → UPDATE, d → DELETE, r → SNAPSHOT;
- each dataset field from its column (``CdcSource.column_map``), nested records rebuilt, and
  values brought to what the dataset's Avro type takes: a ``date`` from Connect's days since
  1970, ``bytes`` from base64, a decimal exact (the JSON number is read as ``Decimal``);
  time stamps with a time zone arrive as ISO 8601 strings and time stamps without one as
  milliseconds, which the SDK's validation takes as they are;
- ``ts_ms`` is the source's commit time;
- the ``event_id`` is a UUID keyed with the bus's secret over the topic, the LSN, the op and
  the key, so a replay after a crash republishes the same ids and sinks apply each change
  once, and no one can test a guessed key (a value a grant may withhold) against an id;
- the LSN and transaction go into the trace id.

What cannot be mapped is a ``Rejection`` with a stable reason; the bridge sends it to the
department's CDC dead letters and goes on.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xbus.core.catalog import Dataset
from xbus.core.envelope import Op
from xbus.producers.cdc.sources import CdcSource, dataset_leaves
from xbus.producers.publisher import EventSpec

OPS = {"c": Op.CREATE, "u": Op.UPDATE, "d": Op.DELETE, "r": Op.SNAPSHOT}
# What the event-id key is derived for, from the bus's secret of keyed pseudonyms.
_ID_PURPOSE = b"xbus cdc event id v1"
_EPOCH = dt.date(1970, 1, 1)

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Rejection:
    """A Debezium record that cannot become an event: why (a stable ``reason`` for metrics
    and the dead letter's header) and what exactly."""

    reason: str
    message: str


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]
    column: str
    convert: Convert | None


def _days(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + dt.timedelta(days=value)
    return value


def _base64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            return value
    return value


def _converter(kind: Any) -> Convert | None:
    """How a column's JSON value becomes what the field's Avro type takes (None: as it is)."""
    if kind == "bytes" or (isinstance(kind, dict) and kind == {"type": "bytes"}):
        return _base64
    if isinstance(kind, dict) and kind.get("logicalType") == "date":
        return _days
    # A decimal is exact already (the record's numbers are read as Decimal); time stamps and
    # the rest are taken as they come.
    return None


class RowMapper:
    """Maps the Debezium records of one source to its dataset's change events; compiled once
    per source."""

    def __init__(self, source: CdcSource, dataset: Dataset, secret: bytes) -> None:
        self.source = source
        self.dataset = dataset
        columns = source.column_map(dataset)
        found = dataset_leaves(dataset)
        self._leaves = [
            _Leaf(leaf.path, columns[leaf.name], _converter(leaf.type)) for leaf in found.leaves
        ]
        # Nullable nested records: null when every column under them is.
        # Deepest first: a nested record emptied before the record around it is looked at.
        self._optional = sorted(found.nullable_records, key=len, reverse=True)
        self._id_key = hmac.new(secret, _ID_PURPOSE, hashlib.sha256).digest()

    def _event_id(self, name: str) -> str:
        """A UUID from the record's coordinates under the bus's secret: the same on every
        replay, and no one without the secret can test a guessed key against it (the key
        may be a value a grant withholds)."""
        return _keyed_uuid(self._id_key, name)

    def record(self, row: dict[str, Any]) -> dict[str, Any] | Rejection:
        """The dataset record a row's columns make."""
        out: dict[str, Any] = {}
        missing = []
        for leaf in self._leaves:
            if leaf.column not in row:
                missing.append(leaf.column)
                continue
            value = row[leaf.column]
            if value is not None and leaf.convert is not None:
                value = leaf.convert(value)
            target = out
            for part in leaf.path[:-1]:
                target = target.setdefault(part, {})
            target[leaf.path[-1]] = value
        if missing:
            return Rejection(
                "missing_column",
                f"the record of {self.source.table} has no column {', '.join(missing)}: if "
                "the table has it, apply the source again (xbus cdc apply: the connector reads "
                "only the columns mapped when it was applied); else map the field to a column "
                f"in {self.source.path or 'the source file'}",
            )
        for path in self._optional:
            parent = out
            for part in path[:-1]:
                parent = parent[part]
            if all(v is None for v in _values(parent[path[-1]])):
                parent[path[-1]] = None
        return out

    def event(self, topic: str, key: bytes | None, value: bytes | None) -> EventSpec | Rejection:
        """The event one Debezium record stands for; never raises for a record's sake."""
        try:
            return self._event(topic, key, value)
        except (TypeError, KeyError, AttributeError, ValueError, OverflowError) as exc:
            return Rejection("unmappable", f"{type(exc).__name__}: {exc}")

    def _event(self, topic: str, key: bytes | None, value: bytes | None) -> EventSpec | Rejection:
        if value is None:
            return Rejection("tombstone", "a record without a value (turn tombstones off)")
        try:
            change = json.loads(value, parse_float=decimal.Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            return Rejection("undecodable", f"not a Debezium JSON record: {exc}")
        if not isinstance(change, dict):
            return Rejection("undecodable", "not a Debezium JSON record: not an object")
        op = OPS.get(change.get("op", ""))
        if op is None:
            return Rejection("unknown_op", f"Debezium op {change.get('op')!r} is not c, u, d or r")
        source = change.get("source") or {}
        before: dict[str, Any] | None = None
        after: dict[str, Any] | None = None
        if op in (Op.UPDATE, Op.DELETE):
            if change.get("before") is None:
                return Rejection(
                    "no_before_image",
                    f"an {op.value} of {self.source.table} without its row before: set "
                    f"ALTER TABLE {self.source.table} REPLICA IDENTITY FULL",
                )
            mapped = self.record(change["before"])
            if isinstance(mapped, Rejection):
                return mapped
            before = mapped
        if op is not Op.DELETE:
            if change.get("after") is None:
                return Rejection("no_after_image", f"an {op.value} without its row after")
            mapped = self.record(change["after"])
            if isinstance(mapped, Rejection):
                return mapped
            after = mapped
        if not key:
            return Rejection(
                "no_key",
                f"a record of {self.source.table} without a key: give the table a primary key "
                "(Debezium keys records by it, and the event id needs it)",
            )
        lsn = source.get("lsn")
        name = f"{topic}|{lsn}|{op.value}|{key.decode('utf-8', 'replace')}"
        return EventSpec(
            op=op,
            after=after,
            before=before,
            ts_ms=int(source.get("ts_ms") or change.get("ts_ms") or 0),
            event_id=self._event_id(name),
            trace_id=f"lsn={lsn};tx={source.get('txId')}",
        )


def _keyed_uuid(key: bytes, name: str) -> str:
    digest = hmac.new(key, name.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def _values(record: Any) -> list[Any]:
    if not isinstance(record, dict):
        return [record]
    return [v for value in record.values() for v in _values(value)]
