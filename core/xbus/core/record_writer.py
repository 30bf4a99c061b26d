"""A dataset record checked and written as Avro binary in one pass, by a writer compiled once
per schema.

The reference path checks a record with ``xbus.core.validation`` (which builds the converted
record as a new dict, with every field's path), wraps it in the envelope and hands it to
fastavro (which finds, for every value, its schema, its logical type and its writer again).
That costs a publisher most of its time. A compiled writer walks the record once: it takes
each value as the validation rules take it and appends its bytes as fastavro writes them.

It decides only what it is sure of. It writes a valid record exactly as the reference path
would, and raises ``Undecided`` for anything else: every invalid record (the reference path
then names each problem with its path and message, so errors stay the reference's own), and
every valid one in a form it does not take (a ``dict`` subclass, ``int`` where a double is
expected, a union of several types...). Schemas with parts it cannot write at all raise
``NotCompiled`` when compiled; their records all take the reference path. Logical types
(date, timestamps, decimal, uuid) are converted by validation's own rules, so that what they
accept and the values they produce cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

from xbus.core.avro_binary import (
    LENGTHS,
    LONG_RANGE,
    SHORT,
    double_bytes,
    float_bytes,
    length_bytes,
    long_bytes,
    string_bytes,
    union_index,
)
from xbus.core.avro_names import defined_name, full_name, namespace_of
from xbus.core.errors import XbusError
from xbus.core.identifiers import FORMATS
from xbus.core.validation import FieldError, SchemaCompiler

Write = Callable[[Any, bytearray], Any]
"""Appends a value's bytes to the buffer and returns the value as validation converts it
(what a ``xbus.format`` check reads); raises ``Undecided`` when it is not sure."""

_INT_RANGE = (-(2**31), 2**31 - 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MISSING = object()
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Undecided(XbusError):
    """The compiled writer is not sure of this record: the reference path must decide.
    Never reaches a caller of the publisher."""

    reason = "undecided"


class NotCompiled(XbusError):
    """The schema has a part the compiled writer does not write; its records take the
    reference path."""

    reason = "not_compiled"


class RecordWriterCompiler:
    """Compiles Avro schemas (as parsed JSON) into writers, resolving named types as
    ``xbus.core.validation.SchemaCompiler`` does."""

    def __init__(self) -> None:
        self._named: dict[str, Write] = {}

    def compile(self, schema: Any, namespace: str = "") -> Write:
        """The writer of ``schema``; raises ``NotCompiled`` if it has a part it cannot
        write."""
        if isinstance(schema, str):
            return self._primitive(schema, {}) or self._reference(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self.compile(kind, namespace)
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "enum":
            return self._named_type(schema, namespace, _enum(schema["symbols"]))
        if kind == "fixed":
            if "logicalType" in schema:
                raise NotCompiled(f"fixed with logical type {schema['logicalType']!r}")
            return self._named_type(schema, namespace, _fixed(schema["size"]))
        if kind == "array":
            return _array(self.compile(schema["items"], namespace))
        if kind == "map":
            return _map(self.compile(schema["values"], namespace))
        return self._primitive(kind, schema) or self._reference(kind, namespace)

    # -- named types ---------------------------------------------------------------------

    def _named_type(self, schema: dict[str, Any], namespace: str, write: Write) -> Write:
        self._named[defined_name(schema, namespace)] = write
        self._named.setdefault(schema["name"], write)
        return write

    def _reference(self, name: str, namespace: str) -> Write:
        full = full_name(name, namespace)
        named = self._named
        if full not in named and name not in named:
            raise NotCompiled(f"unknown Avro type {name!r}")

        def write(value: Any, out: bytearray) -> Any:
            return (named.get(full) or named[name])(value, out)

        return write

    def _record(self, schema: dict[str, Any], namespace: str) -> Write:
        inner_space = namespace_of(defined_name(schema, namespace))
        slot: list[Write] = []

        def write(value: Any, out: bytearray) -> Any:
            return slot[0](value, out)

        self._named_type(schema, namespace, write)  # before the fields: records may recurse
        fields: list[tuple[str, Write, bytes | None]] = []
        for f in schema["fields"]:
            field_write = self.compile(f["type"], inner_space)
            fmt = f.get("xbus.format")
            if fmt:
                field_write = _with_format(field_write, fmt)
            fields.append((f["name"], field_write, _default_bytes(f)))
        slot.append(_record_fields(fields))
        return write

    # -- unions and primitives -------------------------------------------------------------

    def _union(self, schema: list[Any], namespace: str) -> Write:
        others = [(i, s) for i, s in enumerate(schema) if s != "null"]
        null = union_index(schema.index("null")) if "null" in schema else None
        if len(others) != 1:
            # Which branch fastavro picks for a value of a union of several types is its own
            # search: only null is written here, the rest is left to it.
            return _null_or_undecided(null)
        index, branch = others[0]
        return _optional(null, union_index(index), self.compile(branch, namespace))

    def _primitive(self, kind: str, schema: dict[str, Any]) -> Write | None:
        logical = schema.get("logicalType")
        if logical is not None:
            compile_logical = _LOGICAL.get((kind, logical))
            if compile_logical is None:
                if kind in _PRIMITIVES:
                    raise NotCompiled(f"{kind} with logical type {logical!r}")
                return None
            return compile_logical(schema)
        return _WRITERS.get(kind)


def compile_record_writer(record_schema: dict[str, Any]) -> Write:
    """The writer of a dataset's record schema; raises ``NotCompiled`` if it has a part the
    compiled writer does not write."""
    return RecordWriterCompiler().compile(record_schema, record_schema.get("namespace", ""))


# -- records, containers, unions --------------------------------------------------------------


def _record_fields(fields: list[tuple[str, Write, bytes | None]]) -> Write:
    writes = [(name, field_write) for name, field_write, _ in fields]
    count = len(fields)

    def write_with_defaults(value: dict[Any, Any], out: bytearray) -> None:
        given = 0
        for name, field_write, default in fields:
            field_value = value.get(name, _MISSING)
            if field_value is _MISSING:
                if default is None:
                    raise Undecided
                out += default
            else:
                given += 1
                field_write(field_value, out)
        if given != len(value):  # keys that are not fields of the record
            raise Undecided

    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not dict:
            raise Undecided
        if len(value) != count:
            write_with_defaults(value, out)
            return value
        # As many keys as fields: either every field is there, or a key is not a field.
        try:
            for name, field_write in writes:
                field_write(value[name], out)
        except KeyError:
            raise Undecided from None
        return value

    return write


def _default_bytes(field: dict[str, Any]) -> bytes | None:
    """The bytes of a field's default when the field is left out, if the compiled writer
    writes it: a null default of a nullable field (what validation fills in and fastavro then
    writes). Any other default is left to the reference path."""
    if "default" not in field or field["default"] is not None:
        return None
    kind = field["type"]
    if kind == "null":
        return b""
    if isinstance(kind, list) and "null" in kind:
        return union_index(kind.index("null"))
    return None


def _array(item: Write) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise Undecided
        if value:
            out += length_bytes(len(value))
            for v in value:
                item(v, out)
        out.append(0)
        return value

    return write


def _map(values: Write) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not dict:
            raise Undecided
        if value:
            out += length_bytes(len(value))
            for k, v in value.items():
                if type(k) is not str:  # validation turns keys to strings, maybe merging two
                    raise Undecided
                out += string_bytes(k)
                values(v, out)
        out.append(0)
        return value

    return write


def _optional(null: bytes | None, index: bytes, branch: Write) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if value is None and null is not None:
            out += null
            return None
        out += index
        return branch(value, out)

    return write


def _null_or_undecided(null: bytes | None) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if value is None and null is not None:
            out += null
            return None
        raise Undecided

    return write


def _with_format(inner: Write, fmt: str) -> Write:
    if fmt not in FORMATS:
        raise NotCompiled(f"unknown xbus.format {fmt!r}")
    valid = FORMATS[fmt][0]
    if inner is _string:  # the usual case, in one call
        return _checked_string(valid)

    def write(value: Any, out: bytearray) -> Any:
        result = inner(value, out)
        if isinstance(result, str) and not valid(result):
            raise Undecided
        return result

    return write


def _checked_string(valid: Callable[[str], bool]) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not str or not valid(value):
            raise Undecided
        data = value.encode()
        size = len(data)
        out += LENGTHS[size] if size < SHORT else length_bytes(size)
        out += data
        return value

    return write


def _enum(symbols: list[str]) -> Write:
    indexes = {symbol: long_bytes(i) for i, symbol in enumerate(symbols)}

    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not str:
            raise Undecided
        index = indexes.get(value)
        if index is None:
            raise Undecided
        out += index
        return value

    return write


def _fixed(size: int) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not bytes or len(value) != size:
            raise Undecided
        out += value
        return value

    return write


def _null(value: Any, out: bytearray) -> Any:
    if value is not None:
        raise Undecided
    return None


def _boolean(value: Any, out: bytearray) -> Any:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise Undecided
    return value


def _integer(low: int, high: int) -> Write:
    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not int or not low <= value <= high:
            raise Undecided
        out += long_bytes(value)
        return value

    return write


def _float(value: Any, out: bytearray) -> Any:
    if type(value) is int:
        value = float(value)  # as validation converts it (a huge int raises there too)
    elif type(value) is not float or value != value:  # NaN: its bits are fastavro's to choose
        raise Undecided
    out += float_bytes(value)
    return value


def _double(value: Any, out: bytearray) -> Any:
    if type(value) is int:
        value = float(value)
    elif type(value) is not float:
        raise Undecided
    out += double_bytes(value)
    return value


def _string(value: Any, out: bytearray) -> Any:
    if type(value) is not str:
        raise Undecided
    data = value.encode()  # strict UTF-8, as fastavro: a lone surrogate raises
    size = len(data)
    out += LENGTHS[size] if size < SHORT else length_bytes(size)
    out += data
    return value


def _bytes(value: Any, out: bytearray) -> Any:
    if type(value) is not bytes:
        raise Undecided
    out += length_bytes(len(value))
    out += value
    return value


_WRITERS: dict[str, Write] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer(*_INT_RANGE),
    "long": _integer(*LONG_RANGE),
    "float": _float,
    "double": _double,
    "string": _string,
    "bytes": _bytes,
}


# -- logical types: validation's conversion, then fastavro's bytes ------------------------------
#
# Each takes the Python type that validation passes through unchanged directly, and any other
# form (an ISO string, epoch milliseconds, a decimal as text...) through validation's own
# conversion.

Encode = Callable[[Any], bytes]


def _converted(schema: dict[str, Any], encode: Encode) -> Write:
    conform = SchemaCompiler().compile(schema)

    def write(value: Any, out: bytearray) -> Any:
        problems: list[FieldError] = []
        result = conform(value, "", problems)
        if problems:
            raise Undecided
        out += encode(result)
        return result

    return write


def _date_bytes(value: dt.date) -> bytes:
    return long_bytes(value.toordinal() - _EPOCH_ORDINAL)


def _date(schema: dict[str, Any]) -> Write:
    converted = _converted(schema, _date_bytes)

    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not dt.date:
            return converted(value, out)
        out += _date_bytes(value)
        return value

    return write


def _timestamp(unit: dt.timedelta) -> Callable[[dict[str, Any]], Write]:
    def encode(value: dt.datetime) -> bytes:
        # fastavro's (days * 86400 + seconds) * units per second + whole units of the
        # microseconds: the whole units since the epoch, rounded down.
        return long_bytes(_in_long_range((value - _EPOCH) // unit))

    def compile_timestamp(schema: dict[str, Any]) -> Write:
        converted = _converted(schema, encode)

        def write(value: Any, out: bytearray) -> Any:
            if type(value) is not dt.datetime or value.tzinfo is None:
                return converted(value, out)
            out += encode(value)
            return value

        return write

    return compile_timestamp


def _in_long_range(value: int) -> int:
    if not LONG_RANGE[0] <= value <= LONG_RANGE[1]:
        raise Undecided
    return value


def _decimal(schema: dict[str, Any]) -> Write:
    precision, scale = schema["precision"], schema.get("scale", 0)
    if precision < 1:
        raise NotCompiled(f"decimal of precision {precision}")
    quantum = decimal.Decimal(1).scaleb(-scale)
    bound = 10**precision

    def encode(value: decimal.Decimal) -> bytes:
        return _unscaled_bytes(int(value.scaleb(scale)))

    converted = _converted(schema, encode)

    def write(value: Any, out: bytearray) -> Any:
        if type(value) is not decimal.Decimal:
            return converted(value, out)
        # Validation's checks of a Decimal, in its order: finite, at most ``scale`` places,
        # not too large for the precision; then quantized to the scale.
        exponent = value.as_tuple().exponent
        if (
            type(exponent) is not int
            or exponent < -scale
            or (value and value.adjusted() >= precision - scale)
        ):
            raise Undecided
        scaled = value.quantize(quantum)
        unscaled = int(scaled.scaleb(scale))
        if abs(unscaled) >= bound:
            raise Undecided
        out += _unscaled_bytes(unscaled)
        return scaled

    return write


def _unscaled_bytes(unscaled: int) -> bytes:
    """A decimal as fastavro writes it, from its digits once quantized to the scale (the
    unscaled integer): two's complement, big-endian, in as many bytes as the magnitude needs
    with a sign bit."""
    data = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    return length_bytes(len(data)) + data


def _uuid(schema: dict[str, Any]) -> Write:
    return _converted(schema, string_bytes)  # validation gives the UUID's canonical text


_LOGICAL: dict[tuple[str, str], Callable[[dict[str, Any]], Write]] = {
    ("int", "date"): _date,
    ("long", "timestamp-millis"): _timestamp(dt.timedelta(milliseconds=1)),
    ("long", "timestamp-micros"): _timestamp(dt.timedelta(microseconds=1)),
    ("bytes", "decimal"): _decimal,
    ("string", "uuid"): _uuid,
}
