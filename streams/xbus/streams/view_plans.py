"""Views spliced from the source bytes: a delivered record built mostly from slices of the
record its department wrote, instead of encoding the whole view again.

A view differs from its source event only in ``before`` and ``after``: the envelope's other
fields (event id, department, dataset, op, time, source) are written as they came. Within
each image, a field the grant sends unmasked, renamed or not, has the same Avro encoding in
source and view; only masked, nested, derived and looked-up fields are computed (by the
grant's own steps, ``xbus.streams.policy.ViewSteps``) and encoded. So per writer schema the
source is scanned once into field boundaries (``Scanner``), and per grant and writer schema
a ``ViewPlan`` says which slices to copy and which values to encode.

The bytes are those the reference path (``decide``, then the view encoded whole) writes: the
differential test in ``tests/streams/test_decision_agreement.py`` compares them. Where a
plan cannot be made (a writer schema whose envelope or fields encode otherwise than the
view's, a field type it has no encoder for) the router uses the reference path, and counts
it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from xbus.core.avro_names import PRIMITIVES, NamedTypes, defined_name, namespace_of
from xbus.core.envelope import ChangeEvent, Record
from xbus.streams.exceptions import NoViewPlan
from xbus.streams.policy import CompiledGrant, ReferenceTables

Skip = Callable[[bytes, int], int]
Encode = Callable[[Any], bytes]
IMAGES = ("before", "after")


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _skip_varint(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _skip_sized(data: bytes, pos: int) -> int:
    size, pos = _read_long(data, pos)
    return pos + size


def _skip_nothing(data: bytes, pos: int) -> int:
    return pos


def _fixed(size: int) -> Skip:
    return lambda data, pos: pos + size


_PRIMITIVE_SKIPS: dict[str, Skip] = {
    "null": _skip_nothing,
    "boolean": _fixed(1),
    "int": _skip_varint,
    "long": _skip_varint,
    "float": _fixed(4),
    "double": _fixed(8),
    "bytes": _skip_sized,
    "string": _skip_sized,
}


def skipper(t: Any, names: NamedTypes, namespace: str) -> Skip:
    """A function that, given bytes and the position where a value of Avro type ``t``
    starts, returns where it ends."""
    if isinstance(t, str):
        if t in PRIMITIVES:
            return _PRIMITIVE_SKIPS[t]
        found = names.lookup(t, namespace)
        if found is None:
            raise NoViewPlan(f"unknown Avro type {t}")
        return skipper(found, names, namespace)
    if isinstance(t, list):
        branches = [skipper(b, names, namespace) for b in t]

        def skip_union(data: bytes, pos: int) -> int:
            index, pos = _read_long(data, pos)
            return branches[index](data, pos)

        return skip_union
    kind = t.get("type")
    if not isinstance(kind, str):
        raise NoViewPlan(f"Avro type {kind!r} is not scanned")
    if kind in PRIMITIVES:
        return _PRIMITIVE_SKIPS[kind]
    if kind == "enum":
        return _skip_varint
    if kind == "fixed":
        return _fixed(int(t["size"]))
    if kind == "record":
        inner = _namespace_of(t, namespace)
        fields = [skipper(f["type"], names, inner) for f in t["fields"]]

        def skip_record(data: bytes, pos: int) -> int:
            for skip in fields:
                pos = skip(data, pos)
            return pos

        return skip_record
    if kind in ("array", "map"):
        item = skipper(t["items"] if kind == "array" else t["values"], names, namespace)
        keyed = kind == "map"

        def skip_blocks(data: bytes, pos: int) -> int:
            while True:
                count, pos = _read_long(data, pos)
                if count == 0:
                    return pos
                if count < 0:
                    size, pos = _read_long(data, pos)
                    pos += size
                    continue
                for _ in range(count):
                    if keyed:
                        pos = _skip_sized(data, pos)
                    pos = item(data, pos)

        return skip_blocks
    raise NoViewPlan(f"Avro type {kind!r} is not scanned")


def _namespace_of(named: dict[str, Any], namespace: str) -> str:
    """The namespace names used inside the named type ``named`` resolve against."""
    return namespace_of(defined_name(named, namespace))


def _record_of_image(t: Any, names: NamedTypes, namespace: str) -> dict[str, Any]:
    """The record branch of an image's ``["null", record]`` union."""
    if not (isinstance(t, list) and len(t) == 2 and t[0] == "null"):
        raise NoViewPlan("an image is not a union of null and a record")
    branch = t[1]
    if isinstance(branch, str):
        branch = names.lookup(branch, namespace)
    if not isinstance(branch, dict) or branch.get("type") != "record":
        raise NoViewPlan("an image is not a record")
    return branch


class Scanned:
    """Where a source record's fields lie: ``segments`` the envelope in order, its fields
    other than the images as bytes (neighbours joined), each image by its name;
    ``images[name]`` the field boundaries of ``before`` or ``after`` (None if null)."""

    __slots__ = ("body", "images", "segments")

    def __init__(
        self,
        body: bytes,
        segments: list[bytes | str],
        images: dict[str, list[int] | None],
    ) -> None:
        self.body, self.segments, self.images = body, segments, images


class Scanner:
    """Scans the bodies written with one writer schema (an envelope)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        names = NamedTypes(schema)
        namespace = _namespace_of(schema, "")
        self.schema = schema
        self.fields: list[str] = [f["name"] for f in schema["fields"]]
        self.types: list[Any] = [f["type"] for f in schema["fields"]]
        if not set(IMAGES) <= set(self.fields):
            raise NoViewPlan("the writer schema has no before and after")
        image = _record_of_image(schema["fields"][self.fields.index("before")]["type"], names, "")
        after = _record_of_image(schema["fields"][self.fields.index("after")]["type"], names, "")
        if after is not image:
            raise NoViewPlan("before and after are records of different types")
        self.record = image
        inner = _namespace_of(image, namespace)
        self.record_fields: list[str] = [f["name"] for f in image["fields"]]
        self.record_types: list[Any] = [f["type"] for f in image["fields"]]
        self.record_names, self.record_namespace = names, inner
        record_skips = [skipper(f["type"], names, inner) for f in image["fields"]]
        steps: list[tuple[str | None, Skip | None]] = []
        for f in schema["fields"]:
            if f["name"] in IMAGES:
                steps.append((f["name"], None))
            else:
                steps.append((None, skipper(f["type"], names, namespace)))

        def scan_record(data: bytes, pos: int) -> list[int]:
            bounds = [pos]
            for skip in record_skips:
                pos = skip(data, pos)
                bounds.append(pos)
            return bounds

        def scan(body: bytes) -> Scanned:
            pos = 0
            segments: list[bytes | str] = []
            images: dict[str, list[int] | None] = {}
            start = 0  # of the envelope's bytes not yet in a segment
            for image_name, skip in steps:
                if skip is not None:
                    pos = skip(body, pos)
                    continue
                if pos > start:
                    segments.append(body[start:pos])
                segments.append(image_name or "")
                branch, pos = _read_long(body, pos)
                if branch == 0:
                    images[image_name or ""] = None
                else:
                    bounds = scan_record(body, pos)
                    images[image_name or ""] = bounds
                    pos = bounds[-1]
                start = pos
            if pos != len(body):
                raise NoViewPlan("the body is longer than its schema says")
            if pos > start:
                segments.append(body[start:pos])
            return Scanned(body, segments, images)

        self.scan = scan


def _normal(t: Any, names: NamedTypes, namespace: str, seen: frozenset[str] = frozenset()) -> Any:
    """Type ``t`` as its encoding and its meaning see it: names resolved; docs, names,
    defaults and classifications left out; enum symbols and logical types kept."""
    if isinstance(t, str):
        if t in PRIMITIVES:
            return (t, None, None, None)
        found = names.lookup(t, namespace)
        if found is None:
            raise NoViewPlan(f"unknown Avro type {t}")
        key = f"{namespace}:{t}"
        if key in seen:
            return ("recursive", t.rsplit(".", 1)[-1])
        return _normal(found, names, namespace, seen | {key})
    if isinstance(t, list):
        return ("union", *(_normal(b, names, namespace, seen) for b in t))
    kind = t.get("type")
    if not isinstance(kind, str):
        raise NoViewPlan(f"Avro type {kind!r} is not compared")
    if kind == "record":
        inner = _namespace_of(t, namespace)
        return ("record", *(_normal(f["type"], names, inner, seen) for f in t["fields"]))
    if kind == "enum":  # a symbol's index is its encoding
        return ("enum", tuple(t["symbols"]))
    if kind == "fixed":
        return ("fixed", t["size"], t.get("logicalType"), t.get("precision"), t.get("scale"))
    if kind == "array":
        return ("array", _normal(t["items"], names, namespace, seen))
    if kind == "map":
        return ("map", _normal(t["values"], names, namespace, seen))
    if kind in PRIMITIVES:  # a decimal's scale says what its bytes mean
        return (kind, t.get("logicalType"), t.get("precision"), t.get("scale"))
    raise NoViewPlan(f"Avro type {kind!r} is not compared")


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_string(v: Any) -> bytes:
    data: bytes = v.encode()  # as fastavro: a str, nothing else
    return _zigzag(len(data)) + data


def _encode_long(v: Any) -> bytes:
    # As fastavro: an int or a bool, within a C long (it does not hold an Avro int to 32 bits).
    if type(v) is not int and type(v) is not bool:
        raise TypeError(f"not an integer: {type(v).__name__}")
    if not -(2**63) <= v < 2**63:
        raise OverflowError("integer out of the range of a long")
    return _zigzag(int(v))


def _encode_double(v: Any) -> bytes:
    return struct.pack("<d", v)


_FAST_ENCODERS: dict[str, Encode] = {
    "null": lambda v: b"" if v is None else _refuse(v),
    "string": _encode_string,
    "int": _encode_long,
    "long": _encode_long,
    "double": _encode_double,
}


def _refuse(v: Any) -> bytes:
    raise TypeError(f"not null: {type(v).__name__}")


def encoder(t: Any, view_schema: dict[str, Any]) -> Encode:
    """How a computed view field's value of Avro type ``t`` is written: fast for strings,
    longs, doubles and their optional forms, else by fastavro with the type parsed once (any
    named type it refers to defined from the view schema)."""
    if isinstance(t, str) and t in _FAST_ENCODERS:
        return _FAST_ENCODERS[t]
    if isinstance(t, list) and len(t) == 2 and t[0] == "null" and t[1] in _FAST_ENCODERS:
        inner = _FAST_ENCODERS[t[1]]
        return lambda v: b"\x00" if v is None else b"\x02" + inner(v)
    named: dict[str, Any] = {}
    fastavro.parse_schema(view_schema, named_schemas=named)
    try:
        parsed = fastavro.parse_schema(t, named_schemas=named)
    except Exception as exc:
        raise NoViewPlan(f"no encoder for {t!r}: {exc}") from exc

    def encode(v: Any) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, v)
        return buffer.getvalue()

    return encode


# One piece of a view record: the source's bytes from field ``first`` up to field ``end``
# (a run of fields copied in order), or, with ``encode``, the value of view field ``name``.
_Piece = tuple[int, int, Encode | None, str]


class ViewPlan:
    """How one grant's view of records written with one writer schema is made from the
    source bytes; ``header`` is the wire format's prefix of the grant's view schema."""

    def __init__(self, grant: CompiledGrant, scanner: Scanner, header: bytes) -> None:
        steps = grant.steps
        if steps is None:
            raise NoViewPlan("the grant has no steps")
        view_envelope = grant.view_schema
        view_names = NamedTypes(view_envelope)
        envelope_fields = [f["name"] for f in view_envelope["fields"]]
        if envelope_fields != scanner.fields:
            raise NoViewPlan("the envelope's fields differ from the writer's")
        writer_names = NamedTypes(scanner.schema)
        for f, writer_type in zip(view_envelope["fields"], scanner.types, strict=True):
            if f["name"] in IMAGES:
                continue
            ours = _normal(f["type"], view_names, _namespace_of(view_envelope, ""))
            theirs = _normal(writer_type, writer_names, _namespace_of(scanner.schema, ""))
            if ours != theirs:
                raise NoViewPlan(f"the envelope's {f['name']} is written otherwise")
        view_fields = grant.view_record["fields"]
        view_space = _namespace_of(grant.view_record, "")
        pieces: list[_Piece] = []
        computed_steps = []
        for entry, (source, step) in zip(view_fields, steps.fields, strict=False):
            if source is not None and source in scanner.record_fields:
                index = scanner.record_fields.index(source)
                ours = _normal(entry["type"], view_names, view_space)
                theirs = _normal(
                    scanner.record_types[index], scanner.record_names, scanner.record_namespace
                )
                if ours == theirs:
                    last = pieces[-1] if pieces else None
                    if last is not None and last[2] is None and last[1] == index:
                        pieces[-1] = (last[0], index + 1, None, "")  # the run goes on
                    else:
                        pieces.append((index, index + 1, None, ""))
                    continue
            pieces.append((0, 0, encoder(entry["type"], view_envelope), entry["name"]))
            computed_steps.append(step)
        for entry in view_fields[len(steps.fields) :]:
            pieces.append((0, 0, encoder(entry["type"], view_envelope), entry["name"]))
        self.header = header
        self._pieces = pieces
        self._computes = bool(computed_steps) or len(view_fields) > len(steps.fields)
        self._steps = computed_steps
        self._add_derived = steps.add_derived
        self._add_looked_up = steps.add_looked_up

    def _record(
        self,
        body: bytes,
        bounds: list[int],
        record: Record,
        op: str,
        now: Any,
        tables: ReferenceTables | None,
    ) -> bytes:
        values: Record = {}
        if self._computes:
            for step in self._steps:
                step(record, values)
            if self._add_derived is not None:
                self._add_derived(record, op, now, values)
            if self._add_looked_up is not None:
                self._add_looked_up(record, tables, values)
        return b"".join(
            [
                body[bounds[first] : bounds[end]] if encode is None else encode(values[name])
                for first, end, encode, name in self._pieces
            ]
        )

    def view(
        self,
        scanned: Scanned,
        event: ChangeEvent,
        now: Any,
        tables: ReferenceTables | None,
    ) -> bytes:
        """The view's bytes in the Confluent wire format. Raises what the grant's steps raise
        (``GrantFailed``), or an encoding error: the caller then takes the reference path."""
        out = [self.header]
        op = event["op"]
        for segment in scanned.segments:
            if type(segment) is bytes:
                out.append(segment)
                continue
            bounds = scanned.images[segment]  # type: ignore[index]
            record = event[segment]  # type: ignore[literal-required]
            if bounds is None or record is None:
                out.append(b"\x00")
            else:
                out.append(b"\x02")
                out.append(self._record(scanned.body, bounds, record, op, now, tables))
        return b"".join(out)


def plan_or_none(grant: CompiledGrant, scanner: Scanner, header: bytes) -> ViewPlan | None:
    """The grant's plan for records of ``scanner``'s writer schema, if one can be made."""
    try:
        return ViewPlan(grant, scanner, header)
    except NoViewPlan:
        return None


def scanner_or_none(schema: dict[str, Any]) -> Scanner | None:
    """The scanner of a writer schema, if it is an envelope a plan can be made for."""
    try:
        return Scanner(schema)
    except NoViewPlan:
        return None
