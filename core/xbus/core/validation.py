"""Checking a record against its dataset's Avro schema, and bringing it to the Python values
the Avro encoder takes.

Every problem is reported with the path of the field (``after.person.id_number``,
``after.items[2]``), not just the first. Values may come from Python (``date``, ``Decimal``)
or from JSON (ISO 8601 strings, decimals as strings or exact JSON numbers), so the SDK and
the ingest gateway share one set of rules. Each schema is compiled once into a tree of small
checking functions.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xbus.core.avro_names import defined_name, full_name, namespace_of
from xbus.core.identifiers import FORMATS

Errors = list["FieldError"]
Conform = Callable[[Any, str, Errors], Any]

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_EPOCH_DATE = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _NoValue:
    """Marks a field absent from the input (as opposed to given as null)."""


NO_VALUE = _NoValue()


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class SchemaCompiler:
    """Compiles Avro schemas (as parsed JSON) into conform functions, resolving named types."""

    def __init__(self) -> None:
        self._named: dict[str, Conform] = {}

    def compile(self, schema: Any, namespace: str = "") -> Conform:
        """The conform function of ``schema``."""
        if isinstance(schema, str):
            return self._primitive(schema, {}) or self._reference(schema, namespace)
        if isinstance(schema, list):
            return self._union([self.compile(s, namespace) for s in schema], schema)
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self.compile(kind, namespace)
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "enum":
            return self._named_type(schema, namespace, self._enum(schema))
        if kind == "fixed":
            return self._named_type(schema, namespace, self._fixed(schema))
        if kind == "array":
            return self._array(self.compile(schema["items"], namespace))
        if kind == "map":
            return self._map(self.compile(schema["values"], namespace))
        primitive = self._primitive(kind, schema)
        if primitive is None:
            return self._reference(kind, namespace)
        return primitive

    # -- named types ---------------------------------------------------------------------

    def _named_type(self, schema: dict[str, Any], namespace: str, conform: Conform) -> Conform:
        self._named[defined_name(schema, namespace)] = conform
        self._named.setdefault(schema["name"], conform)
        return conform

    def _reference(self, name: str, namespace: str) -> Conform:
        full = full_name(name, namespace)
        named = self._named
        if full not in named and name not in named:
            raise ValueError(f"unknown Avro type {name!r}")

        def conform(value: Any, path: str, errors: Errors) -> Any:
            return (named.get(full) or named[name])(value, path, errors)

        return conform

    def _record(self, schema: dict[str, Any], namespace: str) -> Conform:
        inner_space = namespace_of(defined_name(schema, namespace))
        fields: list[tuple[str, Conform, bool, Any]] = []
        slot: list[Conform] = []

        def conform(value: Any, path: str, errors: Errors) -> Any:
            return slot[0](value, path, errors)

        self._named_type(schema, namespace, conform)  # before the fields: records may recurse
        for f in schema["fields"]:
            check = self.compile(f["type"], inner_space)
            fmt = f.get("xbus.format")
            if fmt:
                check = self._with_format(check, fmt)
            fields.append((f["name"], check, "default" in f, f.get("default")))
        names = frozenset(name for name, *_ in fields)

        def conform_record(value: Any, path: str, errors: Errors) -> Any:
            if not isinstance(value, dict):
                errors.append(
                    FieldError(path or "(record)", f"expected an object, got {_describe(value)}")
                )
                return None
            out: dict[str, Any] = {}
            for name, check, has_default, default in fields:
                given = value.get(name, NO_VALUE)
                if given is NO_VALUE:
                    if has_default:
                        out[name] = default
                    else:
                        errors.append(FieldError(_child(path, name), "required field is missing"))
                    continue
                out[name] = check(given, _child(path, name), errors)
            for extra in value.keys() - names:
                errors.append(
                    FieldError(
                        _child(path, str(extra)), "unknown field: the dataset has no such field"
                    )
                )
            return out

        slot.append(conform_record)
        return conform

    def _enum(self, schema: dict[str, Any]) -> Conform:
        symbols = frozenset(schema["symbols"])
        shown = ", ".join(schema["symbols"])

        def conform(value: Any, path: str, errors: Errors) -> Any:
            if not isinstance(value, str) or value not in symbols:
                errors.append(FieldError(path, f"expected one of {shown}, got {_describe(value)}"))
            return value

        return conform

    def _fixed(self, schema: dict[str, Any]) -> Conform:
        size = schema["size"]

        def conform(value: Any, path: str, errors: Errors) -> Any:
            if not isinstance(value, bytes) or len(value) != size:
                errors.append(FieldError(path, f"expected {size} bytes, got {_describe(value)}"))
            return value

        return conform

    # -- containers ----------------------------------------------------------------------

    def _array(self, item: Conform) -> Conform:
        def conform(value: Any, path: str, errors: Errors) -> Any:
            if not isinstance(value, list | tuple):
                errors.append(FieldError(path, f"expected a list, got {_describe(value)}"))
                return value
            return [item(v, f"{path}[{i}]", errors) for i, v in enumerate(value)]

        return conform

    def _map(self, values: Conform) -> Conform:
        def conform(value: Any, path: str, errors: Errors) -> Any:
            if not isinstance(value, dict):
                errors.append(FieldError(path, f"expected an object, got {_describe(value)}"))
                return value
            return {str(k): values(v, f"{path}[{k!r}]", errors) for k, v in value.items()}

        return conform

    def _union(self, branches: list[Conform], schema: list[Any]) -> Conform:
        nullable = "null" in schema
        others = [b for b, s in zip(branches, schema, strict=True) if s != "null"]
        if len(others) == 1:
            only = others[0]

            def conform_optional(value: Any, path: str, errors: Errors) -> Any:
                if value is None and nullable:
                    return None
                return only(value, path, errors)

            return conform_optional

        def conform(value: Any, path: str, errors: Errors) -> Any:
            if value is None and nullable:
                return None
            for branch in others:
                attempt: Errors = []
                result = branch(value, path, attempt)
                if not attempt:
                    return result
            errors.append(
                FieldError(path, f"matches no branch of the union, got {_describe(value)}")
            )
            return value

        return conform

    def _with_format(self, check: Conform, fmt: str) -> Conform:
        if fmt not in FORMATS:
            raise ValueError(f"unknown xbus.format {fmt!r} (known: {', '.join(FORMATS)})")
        valid, message = FORMATS[fmt]

        def conform(value: Any, path: str, errors: Errors) -> Any:
            result = check(value, path, errors)
            if isinstance(result, str) and not valid(result):
                errors.append(FieldError(path, message))
            return result

        return conform

    # -- primitives and logical types ------------------------------------------------------

    def _primitive(self, kind: str, schema: dict[str, Any]) -> Conform | None:
        logical = schema.get("logicalType")
        if kind == "int" and logical == "date":
            return _date
        if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            return _timestamp
        if kind == "bytes" and logical == "decimal":
            return _decimal(schema["precision"], schema.get("scale", 0))
        if kind == "string" and logical == "uuid":
            return _uuid
        return _PRIMITIVES.get(kind)


def _null(value: Any, path: str, errors: Errors) -> Any:
    if value is not None:
        errors.append(FieldError(path, f"expected null, got {_describe(value)}"))
    return value


def _boolean(value: Any, path: str, errors: Errors) -> Any:
    if not isinstance(value, bool):
        errors.append(FieldError(path, f"expected true or false, got {_describe(value)}"))
    return value


def _integer(low: int, high: int, name: str) -> Conform:
    def conform(value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(FieldError(path, f"expected an integer ({name}), got {_describe(value)}"))
        elif not low <= value <= high:
            errors.append(FieldError(path, f"{value} is out of range for {name}"))
        return value

    return conform


def _number(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        errors.append(FieldError(path, f"expected a number, got {_describe(value)}"))
        return value
    return float(value)


def _string(value: Any, path: str, errors: Errors) -> Any:
    if not isinstance(value, str):
        errors.append(FieldError(path, f"expected a string, got {_describe(value)}"))
    return value


def _bytes(value: Any, path: str, errors: Errors) -> Any:
    if not isinstance(value, bytes):
        errors.append(FieldError(path, f"expected bytes, got {_describe(value)}"))
    return value


_PRIMITIVES: dict[str, Conform] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer(*_INT_RANGE, "int"),
    "long": _integer(*_LONG_RANGE, "long"),
    "float": _number,
    "double": _number,
    "string": _string,
    "bytes": _bytes,
}


def _date(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, dt.datetime):
        errors.append(FieldError(path, "expected a date, got a date and time"))
        return value
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    errors.append(FieldError(path, f"expected a date as YYYY-MM-DD, got {_describe(value)}"))
    return value


def _timestamp(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            errors.append(
                FieldError(path, f"expected an ISO 8601 date and time, got {_describe(value)}")
            )
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            errors.append(FieldError(path, "the date and time needs a UTC offset, e.g. +08:00"))
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        except (OverflowError, ValueError, OSError):
            errors.append(
                FieldError(path, f"{value} ms since 1970 is out of range for a date and time")
            )
            return value
    errors.append(FieldError(path, f"expected a date and time, got {_describe(value)}"))
    return value


def _decimal(precision: int, scale: int) -> Conform:
    def conform(value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = decimal.Decimal(value)
        elif isinstance(value, str):
            try:
                value = decimal.Decimal(value)
            except decimal.InvalidOperation:
                errors.append(
                    FieldError(path, f"expected a decimal number, got {_describe(value)}")
                )
                return value
        elif isinstance(value, float):
            errors.append(
                FieldError(
                    path,
                    "a decimal must be exact: give it as a string or a "
                    "decimal.Decimal, not a float",
                )
            )
            return value
        if not isinstance(value, decimal.Decimal) or not value.is_finite():
            errors.append(FieldError(path, f"expected a decimal number, got {_describe(value)}"))
            return value
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if places > scale:
            errors.append(FieldError(path, f"{value} has {places} decimal places; at most {scale}"))
            return value
        # Checked before quantizing: a huge exponent (1e30, 1e999999999) is more digits than
        # the decimal context holds, and quantize would raise instead of reporting it.
        if value and value.adjusted() >= precision - scale:
            errors.append(FieldError(path, f"{_short(value)} has more than {precision} digits"))
            return value
        scaled = value.quantize(decimal.Decimal(1).scaleb(-scale))
        if len(scaled.as_tuple().digits) > precision:
            errors.append(FieldError(path, f"{value} has more than {precision} digits"))
        return scaled

    return conform


def _short(value: decimal.Decimal) -> str:
    """A decimal as text, shortened when it is too long to read."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"


def _uuid(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    errors.append(FieldError(path, f"expected a UUID, got {_describe(value)}"))
    return value


class RecordValidator:
    """Checks and converts records of one dataset schema."""

    def __init__(self, record_schema: dict[str, Any]) -> None:
        self._conform = SchemaCompiler().compile(record_schema, record_schema.get("namespace", ""))

    def conform(self, record: Any, path: str) -> tuple[dict[str, Any], list[FieldError]]:
        """The record with JSON-style values converted, and every problem found, by path."""
        errors: Errors = []
        return self._conform(record, path, errors), errors
