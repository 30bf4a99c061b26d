"""A dataset's change events written in the Confluent wire format without building them.

The reference path builds each event as a dict (``change_event``), copies it to name the
union branches (``with_union_branches``) and hands it to fastavro. Yet of an event's fields
only the id, the op, the time, the two images and the trace id change from one event to the
next: the wire-format header, the department, the dataset and the source's system and
origin are the same bytes every time. An ``EnvelopeWriter`` writes those once, when it is
made, and per event only what the event brings, its images through the record's compiled
writer (``xbus.core.record_writer``).

It writes only the envelope it knows, field for field the one shipped with xbus
(``resources/envelope.avsc``); another envelope raises ``NotCompiled`` and its events take
the reference path. An event it is not sure of (an op without the images it requires, an id
or a time of another type than the reference path's own) raises ``Undecided``.
"""

from __future__ import annotations

import time
from typing import Any, cast

import fastavro

from xbus.core.avro_binary import LONG_RANGE, long_bytes, string_bytes, union_index
from xbus.core.envelope import IMAGES, Op, record_full_name
from xbus.core.event_ids import new_event_id
from xbus.core.record_writer import NotCompiled, Undecided, compile_record_writer

_UUID = {"type": "string", "logicalType": "uuid"}
_TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
_FIELDS = ("event_id", "department", "dataset", "op", "ts_ms", "before", "after", "source")
_SOURCE_FIELDS = [("system", "string"), ("origin", "string"), ("trace_id", ["null", "string"])]
# Every union of the envelope is ["null", something]: these start its two kinds of value.
_NULL = union_index(0)
_VALUE = union_index(1)


class EnvelopeWriter:
    """Writes the change events of one dataset, published by one system, as the bytes the
    reference path writes (magic byte, schema id, Avro body)."""

    def __init__(
        self,
        schema_id: int,
        envelope: dict[str, Any],
        record_schema: dict[str, Any],
        *,
        department: str,
        dataset: str,
        system: str,
        origin: str,
    ) -> None:
        fields = _known_layout(envelope, record_schema)
        self._record = compile_record_writer(record_schema)
        self._header = b"\x00" + schema_id.to_bytes(4, "big")
        self._names = string_bytes(department) + string_bytes(dataset)
        symbols: list[str] = fields["op"]["symbols"]
        self._ops = {op: long_bytes(symbols.index(op.value)) for op in Op if op.value in symbols}
        self._images = {op: IMAGES[op] for op in self._ops}
        self._source = string_bytes(system) + string_bytes(origin)
        self._time: tuple[int, bytes] = (0, long_bytes(0))

    def write(
        self,
        op: Op,
        after: Any,
        before: Any = None,
        ts_ms: Any = None,
        event_id: Any = None,
        trace_id: Any = None,
    ) -> tuple[str, bytes]:
        """The event's id (``event_id``, or a new one) and its bytes; ``ts_ms`` defaults to
        now. The arguments are ``change_event``'s. Raises ``Undecided`` if the reference path
        must decide."""
        images = self._images.get(op) if type(op) is Op else None
        if images is None or images != (before is not None, after is not None):
            raise Undecided
        if not event_id:  # as change_event: a missing or empty id is replaced
            event_id = new_event_id()
        elif type(event_id) is not str:
            raise Undecided
        out = bytearray(self._header)
        out += string_bytes(event_id)
        out += self._names
        out += self._ops[op]
        out += self._timestamp(ts_ms)
        if before is None:
            out += _NULL
        else:
            out += _VALUE
            self._record(before, out)
        if after is None:
            out += _NULL
        else:
            out += _VALUE
            self._record(after, out)
        out += self._source
        if trace_id is None:
            out += _NULL
        elif type(trace_id) is str:
            out += _VALUE
            out += string_bytes(trace_id)
        else:
            raise Undecided
        return event_id, bytes(out)

    def _timestamp(self, ts_ms: Any) -> bytes:
        if ts_ms is None:
            ts_ms = int(time.time() * 1000)
        elif type(ts_ms) is not int or not LONG_RANGE[0] <= ts_ms <= LONG_RANGE[1]:
            raise Undecided
        # Events published in the same millisecond share their time's bytes.
        last, written = self._time
        if ts_ms != last:
            written = long_bytes(ts_ms)
            self._time = (ts_ms, written)
        return written


def _known_layout(envelope: dict[str, Any], record_schema: dict[str, Any]) -> dict[str, Any]:
    """The envelope's field types by name, if the envelope is the one this writer writes
    (null first in each of its unions); else raises ``NotCompiled``."""
    fields: dict[str, Any] = {f["name"]: f["type"] for f in envelope["fields"]}
    record_name = record_full_name(record_schema)
    op, source = fields.get("op"), fields.get("source")
    if not (
        tuple(fields) == _FIELDS
        and fields["event_id"] == _UUID
        and fields["department"] == fields["dataset"] == "string"
        and isinstance(op, dict)
        and op.get("type") == "enum"
        and fields["ts_ms"] == _TIMESTAMP
        and fields["before"] == ["null", record_schema]
        and fields["after"] == ["null", record_name]
        and isinstance(source, dict)
        and source.get("type") == "record"
        and [(f["name"], f["type"]) for f in source["fields"]] == _SOURCE_FIELDS
        and _branch_name(envelope) == record_name
    ):
        raise NotCompiled("not the envelope shipped with xbus")
    return fields


def _branch_name(envelope: dict[str, Any]) -> str:
    """The name fastavro knows the record of ``before`` and ``after`` by: the reference path
    names the union branch with ``record_full_name``, which must be that name."""
    parsed = cast(dict[str, Any], fastavro.parse_schema(envelope))
    before = next(f for f in parsed["fields"] if f["name"] == "before")
    return str(before["type"][1]["name"])
