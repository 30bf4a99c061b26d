"""Hypothesis strategies for the compiled writers' differential tests: dataset record schemas
of every shape the validation takes (nested and recursive records, arrays, maps, enums,
fixed, unions with null, named types used twice, logical types, identifier formats, defaults)
and records for them, valid and not.

``records(schema, native=True)`` gives only the Python values the compiled writer takes as
they are (a str for a string, a date for a date...), valid or not; ``native=False`` adds every
other form the validation knows (ISO strings, epoch milliseconds, decimals as text, UUID
objects, integral Decimals for ints...) and values of no fitting form at all.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from collections import OrderedDict
from typing import Any

from hypothesis import strategies as st

from xbus.core.avro_names import NamedTypes, defined_name, namespace_of
from xbus.core.identifiers import credit_code_check, resident_id_check

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
NAMESPACE = "gov.generated"
_OFFSETS = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(-dt.timedelta(hours=5, minutes=30))]
)

Schema = Any


# -- schemas ---------------------------------------------------------------------------------


@st.composite
def record_schemas(
    draw: st.DrawFn, *, compiled_shapes_only: bool = False, max_depth: int = 3
) -> dict[str, Any]:
    """A dataset record schema with the catalog's metadata; its business key is a string
    field. Unless ``compiled_shapes_only``, some have parts the compiled path leaves to the
    reference path: an int business key, unions of several types, defaults other than
    null."""
    shapes = _Shapes(compiled_shapes_only)
    key_kind = "string" if compiled_shapes_only else draw(st.sampled_from(["string"] * 3 + ["int"]))
    fields = [{"name": "key", "type": key_kind, "classification": "public"}]
    fields += draw(shapes.fields(max_depth, min_size=1))
    return {
        "type": "record",
        "name": "Generated",
        "namespace": NAMESPACE,
        "xbus.department": "generated",
        "xbus.business_key": ["key"],
        "xbus.sharing": "conditional",
        "fields": fields,
    }


class _Shapes:
    """Field types for one schema: named types get names of their own, and later fields
    may refer to those defined before them."""

    def __init__(self, compiled_shapes_only: bool) -> None:
        self.names = (f"T{n}" for n in itertools.count())
        self.defined: list[str] = []  # full names
        self.compiled_only = compiled_shapes_only

    def fields(self, depth: int, min_size: int = 0) -> st.SearchStrategy[list[dict[str, Any]]]:
        @st.composite
        def build(draw: st.DrawFn) -> list[dict[str, Any]]:
            count = draw(st.integers(min_size, 5))
            return [draw(self.field(f"f{i}", depth)) for i in range(count)]

        return build()

    def field(self, name: str, depth: int) -> st.SearchStrategy[dict[str, Any]]:
        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            kind = draw(self.types(depth))
            field: dict[str, Any] = {"name": name, "type": kind, "classification": "internal"}
            if _is_stringy(kind) and draw(st.integers(0, 3)) == 0:
                field["xbus.format"] = draw(st.sampled_from(["resident_id", "credit_code"]))
            if isinstance(kind, list) and kind[0] == "null" and draw(st.booleans()):
                field["default"] = None
            elif kind == "string" and not self.compiled_only and draw(st.integers(0, 5)) == 0:
                field["default"] = "default"  # the compiled path leaves this one to the reference
            return field

        return build()

    def types(self, depth: int) -> st.SearchStrategy[Any]:
        @st.composite
        def build(draw: st.DrawFn) -> Any:
            choices = ["primitive", "logical", "enum", "fixed", "optional"]
            if not self.compiled_only:
                choices.append("union")
            if self.defined:
                choices.append("reference")
            if depth > 0:
                choices += ["array", "map", "record", "optional"]
            return draw(self._build(draw(st.sampled_from(choices)), depth))

        return build()

    def _build(self, choice: str, depth: int) -> st.SearchStrategy[Any]:
        if choice == "primitive":
            return st.sampled_from(
                ["boolean", "int", "long", "float", "double", "bytes", "string", "string"]
            )
        if choice == "logical":
            return _logical_types()
        if choice == "enum":
            name = self._define()
            return st.lists(st.sampled_from("ABCDEFG"), min_size=1, unique=True).map(
                lambda symbols: {"type": "enum", "name": name, "symbols": symbols}
            )
        if choice == "fixed":
            name = self._define()
            return st.integers(0, 4).map(lambda size: {"type": "fixed", "name": name, "size": size})
        if choice == "reference":
            return st.sampled_from(self.defined).flatmap(
                lambda full: st.sampled_from([full, full.rsplit(".", 1)[-1]])
            )
        if choice == "array":
            return self.types(depth - 1).map(lambda items: {"type": "array", "items": items})
        if choice == "map":
            return self.types(depth - 1).map(lambda values: {"type": "map", "values": values})
        if choice == "record":
            name = next(self.names)
            return self.fields(depth - 1).map(lambda fields: self._record(name, fields))
        if choice == "optional":
            return self.types(max(depth - 1, 0)).flatmap(_optional)
        # A union of several types, which only fastavro tells apart.
        return st.sampled_from(
            [["null", "string", "int"], ["null", "long", "boolean"], ["string", "double"]]
        )

    def _define(self) -> str:
        name = next(self.names)
        self.defined.append(f"{NAMESPACE}.{name}")
        return name

    def _record(self, name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
        self.defined.append(f"{NAMESPACE}.{name}")  # after its fields: usable by later ones
        return {"type": "record", "name": name, "fields": fields}


def _optional(inner: Any) -> st.SearchStrategy[Any]:
    if isinstance(inner, list):  # unions do not nest
        return st.just(inner)
    return st.sampled_from([["null", inner], [inner, "null"]])


def _is_stringy(kind: Any) -> bool:
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _logical_types() -> st.SearchStrategy[dict[str, Any]]:
    decimals = st.integers(1, 30).flatmap(
        lambda precision: st.builds(
            lambda scale: {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": precision,
                "scale": scale,
            },
            st.integers(0, precision),
        )
    )
    return st.one_of(
        st.just({"type": "int", "logicalType": "date"}),
        st.just({"type": "long", "logicalType": "timestamp-millis"}),
        st.just({"type": "long", "logicalType": "timestamp-micros"}),
        st.just({"type": "string", "logicalType": "uuid"}),
        decimals,
    )


def recursive_schema() -> dict[str, Any]:
    """A record that contains itself (a chain of nodes), with the catalog's metadata."""
    return {
        "type": "record",
        "name": "Chain",
        "namespace": NAMESPACE,
        "xbus.department": "generated",
        "xbus.business_key": ["key"],
        "xbus.sharing": "conditional",
        "fields": [
            {"name": "key", "type": "string", "classification": "public"},
            {
                "name": "next",
                "type": ["null", "Chain"],
                "default": None,
                "classification": "public",
            },
        ],
    }


# -- records ---------------------------------------------------------------------------------


def records(schema: dict[str, Any], *, native: bool) -> st.SearchStrategy[Any]:
    """Records of ``schema``: half of them valid throughout, the others with a wrong value,
    a missing or unknown field here and there."""
    return st.booleans().flatmap(
        lambda clean: _Values(schema, native=native, clean=clean).of(schema, NAMESPACE, None)
    )


@st.composite
def single_fields(draw: st.DrawFn, *, native: bool) -> tuple[dict[str, Any], Any]:
    """A schema of a string key and one field of any type, and a record of it whose field is
    as likely wrong as right: each type's conversions and faults, one at a time."""
    shapes = _Shapes(compiled_shapes_only=False)
    field = draw(shapes.field("f0", depth=2))
    schema = {
        "type": "record",
        "name": "Single",
        "namespace": NAMESPACE,
        "fields": [{"name": "key", "type": "string"}, field],
    }
    values = _Values(schema, native=native, clean=False)
    good, bad = values._values(field["type"], NAMESPACE, field.get("xbus.format"))
    value = draw(st.one_of(good, bad, values._of_another_type()))
    return schema, {"key": "k", "f0": value}


class _Values:
    def __init__(self, schema: dict[str, Any], *, native: bool, clean: bool) -> None:
        self.named = NamedTypes(schema)
        self.native = native
        self.clean = clean

    def of(self, schema: Schema, namespace: str, fmt: str | None) -> st.SearchStrategy[Any]:
        good, bad = self._values(schema, namespace, fmt)
        if self.clean:
            return good
        # Seldom enough that a record has about one fault: faults do not hide one another.
        faulty = st.one_of(bad, bad, bad, self._of_another_type())
        return _rarely(faulty, otherwise=good)

    def _of_another_type(self) -> st.SearchStrategy[Any]:
        other: st.SearchStrategy[Any] = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=4),
            st.binary(max_size=4),
            st.just([]),
            st.just({}),
        )
        if not self.native:
            other = st.one_of(
                other, st.decimals(), st.just(bytearray(b"x")), st.just((1,)), st.just("\ud800")
            )
        return other

    def _values(self, schema: Schema, namespace: str, fmt: str | None) -> tuple[Any, Any]:
        """Values the reference takes, and values it does not (or fails on)."""
        if isinstance(schema, list):
            choices = [self._values(branch, namespace, fmt) for branch in schema]
            return st.one_of(*(good for good, _ in choices)), st.one_of(*(b for _, b in choices))
        if isinstance(schema, str):
            schema = {"type": schema}
        kind = schema["type"]
        if kind not in _UNNAMED:
            if kind not in ("enum", "fixed", "record"):
                schema = self.named.lookup(kind, namespace)
                assert schema is not None
            return self._named(schema, namespace)
        if kind == "array":
            items = self.of(schema["items"], namespace, None)
            arrays = st.lists(items, max_size=3)
            good = arrays if self.native else st.one_of(arrays, arrays.map(tuple))
            return good, st.one_of(st.just("abc"), st.just({"a": 1}))
        if kind == "map":
            values = self.of(schema["values"], namespace, None)
            good = st.dictionaries(st.text(max_size=3), values, max_size=3)
            if not self.native:
                good = st.one_of(good, st.dictionaries(st.integers(0, 3), values, max_size=2))
            return good, st.just([("a", 1)])
        logical = schema.get("logicalType")
        if logical == "date":
            return self._dates()
        if logical in ("timestamp-millis", "timestamp-micros"):
            return self._timestamps()
        if logical == "uuid":
            return self._uuids()
        if logical == "decimal":
            return self._decimals(schema["precision"], schema.get("scale", 0))
        return self._primitive(kind, fmt)

    def _named(self, schema: dict[str, Any], namespace: str) -> tuple[Any, Any]:
        kind = schema["type"]
        if kind == "enum":
            return st.sampled_from(schema["symbols"]), st.sampled_from(["Z", "a", ""])
        if kind == "fixed":
            size = schema["size"]
            return st.binary(min_size=size, max_size=size), st.just(b"x" * (size + 1))
        record = st.deferred(lambda: self._record(schema, namespace))  # records may recurse
        return record, st.just(["not", "a", "record"])

    def _record(self, schema: dict[str, Any], namespace: str) -> st.SearchStrategy[Any]:
        inner = namespace_of(defined_name(schema, namespace))
        fields = {
            f["name"]: self.of(f["type"], inner, f.get("xbus.format")) for f in schema["fields"]
        }
        optional = {f["name"] for f in schema["fields"] if "default" in f}

        @st.composite
        def build(draw: st.DrawFn) -> Any:
            record = {name: draw(value) for name, value in fields.items()}
            for name in list(record):
                if name in optional and draw(st.integers(0, 3)) == 0:
                    del record[name]  # its default stands in
                elif not self.clean and draw(_RARELY):
                    del record[name]
            if not self.clean and draw(_RARELY):
                record["unknown"] = 1
            if not self.native and draw(st.integers(0, 9)) == 0:
                return OrderedDict(record)
            return record

        return build()

    def _primitive(self, kind: str, fmt: str | None) -> tuple[Any, Any]:
        if kind == "null":
            return st.none(), st.just(0)
        if kind == "boolean":
            return st.booleans(), st.just(1)
        if kind in ("int", "long"):
            low, high = INT_RANGE if kind == "int" else LONG_RANGE
            good = st.integers(low, high)
            bad = st.one_of(st.integers(high + 1, high + 2), st.integers(low - 2, low - 1))
            if not self.native:
                good = st.one_of(good, good.map(decimal.Decimal))
                bad = st.one_of(
                    bad, st.just(decimal.Decimal("1.5")), st.just(decimal.Decimal("NaN"))
                )
            return good, bad
        if kind in ("float", "double"):
            if self.native and kind == "float":  # within float's range: fastavro's C cast
                floats = st.floats(width=32, allow_nan=False)
            else:
                floats = st.floats()
            good = st.one_of(floats, st.integers(-(2**60), 2**60))
            if not self.native:
                good = st.one_of(good, st.decimals(allow_nan=False))
                return good, st.one_of(st.just(10**400), st.just("1.5"))
            return good, st.just("1.5")
        if kind == "bytes":
            return st.binary(max_size=8), st.just(bytearray(b"x"))
        text = st.text(max_size=8)
        good, bad = text, st.just(b"text")
        if fmt == "resident_id":
            good = st.one_of(_resident_ids(), _resident_ids().map(str.lower))
            bad = st.one_of(text, _resident_ids().map(lambda s: s[:17] + "Y"))
        elif fmt == "credit_code":
            good = _credit_codes()
            bad = st.one_of(text, _credit_codes().map(lambda s: s[:17] + "I"))
        if not self.native:
            bad = st.one_of(bad, st.just("\ud800"), st.just(_Text("x")))
        return good, bad

    def _dates(self) -> tuple[Any, Any]:
        good = st.dates()
        bad = st.one_of(st.datetimes(), st.just("2026-13-01"), st.just(20000))
        if not self.native:
            good = st.one_of(good, good.map(dt.date.isoformat))
        return good, bad

    def _timestamps(self) -> tuple[Any, Any]:
        good = st.datetimes(timezones=_OFFSETS)
        bad = st.one_of(st.datetimes(), st.just("yesterday"))
        if not self.native:
            good = st.one_of(good, good.map(dt.datetime.isoformat), st.integers(-(2**45), 2**45))
            bad = st.one_of(bad, st.datetimes().map(dt.datetime.isoformat), st.integers())
        return good, bad

    def _uuids(self) -> tuple[Any, Any]:
        texts = st.uuids().map(str)
        good = st.one_of(texts, texts.map(str.upper))
        if not self.native:  # uuid.UUID reads braces and URNs too
            good = st.one_of(good, st.uuids(), texts.map(lambda u: "{" + u + "}"))
        return good, st.just("not-a-uuid")

    def _decimals(self, precision: int, scale: int) -> tuple[Any, Any]:
        def fitting(places: int) -> st.SearchStrategy[decimal.Decimal]:
            bound = 10 ** (precision - scale + places)
            return st.integers(-bound + 1, bound - 1).map(
                lambda n: decimal.Decimal(n).scaleb(-places)
            )

        good = st.integers(0, scale).flatmap(fitting)
        if precision > scale:  # a positive exponent: 1E+2
            good = st.one_of(
                good,
                st.integers(0, precision - scale - 1).map(lambda e: decimal.Decimal(1).scaleb(e)),
            )
        bad = st.one_of(
            st.integers(1, 9).map(lambda d: decimal.Decimal(d).scaleb(-scale - 1)),
            st.just(decimal.Decimal(10) ** (precision - scale)),
            st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("-Infinity")]),
            st.just(decimal.Decimal("1E+999999")),
        )
        if not self.native:
            good = st.one_of(good, good.map(str), st.integers(-9, 9))
            bad = st.one_of(bad, st.floats(), st.just("1e999999999"), st.just("twelve"))
        return good, bad


_RARELY = st.integers(0, 15).map(lambda n: n == 0)


def _rarely(strategy: st.SearchStrategy[Any], *, otherwise: st.SearchStrategy[Any]) -> Any:
    return _RARELY.flatmap(lambda now: strategy if now else otherwise)


class _Text(str):
    """A str subclass: the compiled path leaves it to the reference."""


_UNNAMED = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string", "array", "map"}
)


def _resident_ids() -> st.SearchStrategy[str]:
    return st.text(st.sampled_from("0123456789"), min_size=17, max_size=17).map(
        lambda body: body + resident_id_check(body)
    )


def _credit_codes() -> st.SearchStrategy[str]:
    alphabet = st.sampled_from("0123456789ABCDEFGHJKLMNPQRTUWXY")
    return st.text(alphabet, min_size=17, max_size=17).map(
        lambda body: body + credit_code_check(body)
    )
