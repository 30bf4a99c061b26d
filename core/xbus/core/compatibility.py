"""Whether events written with one Avro schema can be read with another, and if not, which
field breaks which rule.

The rules are Avro's schema resolution: a reader field the writer lacks needs a default;
an enum symbol the writer may send must exist in the reader (or the reader needs a default);
primitive types may only be promoted (int to long, float or double; long to float or
double; float to double; string and bytes either way); named types must keep their names
(or list the old name in ``aliases``); every branch a writer union may send must be readable.
xbus adds one: a decimal keeps its precision and scale, since its bytes mean nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xbus.core.avro_names import PRIMITIVES, NamedTypes

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader cannot read a writer's events."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(record)'}: {self.message} [{self.rule}]"


def _resolve(names: NamedTypes, schema: Any) -> Any:
    """A named type's definition for its name; the inner type of a wrapper like
    ``{"type": "string"}``; any other type as it is."""
    if isinstance(schema, str) and schema not in PRIMITIVES:
        found = names.lookup(schema)
        return found if found is not None else schema
    if isinstance(schema, dict) and schema.get("type") not in (
        "record",
        "enum",
        "fixed",
        "array",
        "map",
    ):
        inner = schema.get("type")
        if isinstance(inner, str) and inner in PRIMITIVES:
            return schema
        return _resolve(names, inner)
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {schema['name']}"
    if isinstance(schema, dict) and schema.get("logicalType"):
        return f"{kind} ({schema['logicalType']})"
    return kind


class _Checker:
    def __init__(self, reader: Any, writer: Any, reader_is_new: bool) -> None:
        self.reader_is_new = reader_is_new
        self.reader_names = NamedTypes(reader)
        self.writer_names = NamedTypes(writer)
        self.found: list[Incompatibility] = []
        self._seen: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> bool:
        """Whether ``reader`` reads ``writer``; records why not."""
        r = _resolve(self.reader_names, reader)
        w = _resolve(self.writer_names, writer)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            return all([self._readable_branch(r, b, path) for b in w])
        if rk == "union":
            if any(self._quiet(branch, w, path) for branch in r):
                return True
            return self._add(
                path,
                "missing_union_branch",
                f"the reader's union has no branch for the writer's {_describe(w)}",
            )
        if rk != wk:
            if (wk, rk) in _PROMOTIONS:
                return True
            return self._add(
                path, "type_changed", f"type changed from {_describe(w)} to {_describe(r)}"
            )
        if rk == "record":
            return self._record(r, w, path)
        if rk == "enum":
            return self._enum(r, w, path)
        if rk == "fixed":
            ok = self._same_name(r, w, path)
            if r["size"] != w["size"]:
                ok = self._add(
                    path,
                    "fixed_size_changed",
                    f"fixed size changed from {w['size']} to {r['size']}",
                )
            return ok
        if rk == "array":
            return self.check(r["items"], w["items"], f"{path}[]")
        if rk == "map":
            return self.check(r["values"], w["values"], f"{path}{{}}")
        return self._logical(r, w, path)

    def _quiet(self, reader: Any, writer: Any, path: str) -> bool:
        saved = len(self.found)
        ok = self.check(reader, writer, path)
        del self.found[saved:]
        return ok

    def _readable_branch(self, reader: Any, branch: Any, path: str) -> bool:
        if _kind(reader) == "union":
            if any(self._quiet(r, branch, path) for r in reader):
                return True
            # Explain with the branch of the same kind, if there is one.
            w = _resolve(self.writer_names, branch)
            same = [r for r in reader if _kind(_resolve(self.reader_names, r)) == _kind(w)]
            if same:
                return self.check(same[0], branch, path)
            return self._add(
                path,
                "missing_union_branch",
                f"the writer may send {_describe(w)}, which the reader's union lacks",
            )
        return self.check(reader, branch, path)

    def _add(self, path: str, rule: str, message: str) -> bool:
        self.found.append(Incompatibility(path, rule, message))
        return False

    def _same_name(self, r: dict[str, Any], w: dict[str, Any], path: str) -> bool:
        names = {_short(r["name"]), *(_short(a) for a in r.get("aliases", []))}
        if _short(w["name"]) in names:
            return True
        return self._add(
            path,
            "name_changed",
            f"{_kind(r)} renamed from {w['name']} to {r['name']} without an alias",
        )

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> bool:
        key = (r["name"], w["name"])
        if key in self._seen:  # recursive types: already being checked
            return True
        self._seen.add(key)
        ok = self._same_name(r, w, path)
        written = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            child = f"{path}.{f['name']}" if path else f["name"]
            source = written.get(f["name"]) or next(
                (written[a] for a in f.get("aliases", []) if a in written), None
            )
            if source is not None:
                ok = self.check(f["type"], source["type"], child) and ok
            elif "default" not in f:
                ok = self._add(
                    child,
                    "field_without_default",
                    (
                        f"field {f['name']!r} was added without a default, and older events lack it"
                        if self.reader_is_new
                        else f"field {f['name']!r} was removed, and older readers need it "
                        "(it has no default)"
                    ),
                )
        return ok

    def _enum(self, r: dict[str, Any], w: dict[str, Any], path: str) -> bool:
        ok = self._same_name(r, w, path)
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            ok = self._add(
                path,
                "enum_symbol_removed",
                f"the writer may send {', '.join(missing)}, which the reader's enum "
                "lacks (and it has no default)",
            )
        return ok

    def _logical(self, r: Any, w: Any, path: str) -> bool:
        rl = r.get("logicalType") if isinstance(r, dict) else None
        wl = w.get("logicalType") if isinstance(w, dict) else None
        if rl == wl == "decimal" and (
            (r.get("precision"), r.get("scale", 0)) != (w.get("precision"), w.get("scale", 0))
        ):
            return self._add(
                path,
                "decimal_changed",
                f"decimal({w.get('precision')},{w.get('scale', 0)}) changed to "
                f"decimal({r.get('precision')},{r.get('scale', 0)})",
            )
        if rl != wl and "decimal" in (rl, wl):
            return self._add(
                path, "logical_type_changed", f"logical type changed from {wl} to {rl}"
            )
        return True


def incompatibilities(
    reader: Any, writer: Any, *, reader_is_new: bool = True
) -> list[Incompatibility]:
    """Every reason ``reader`` cannot read events written with ``writer`` (empty: it can);
    ``reader_is_new`` words the reasons for a reader that is the newer schema."""
    checker = _Checker(reader, writer, reader_is_new)
    checker.check(reader, writer, "")
    return checker.found


def mode_problems(mode: str, new: Any, old: Any) -> list[tuple[str, Incompatibility]]:
    """What breaks ``mode`` (BACKWARD, FORWARD, FULL, with or without _TRANSITIVE, or NONE)
    between a new schema and one earlier version, each with its direction."""
    base = mode.removesuffix("_TRANSITIVE")
    found: list[tuple[str, Incompatibility]] = []
    if base in ("BACKWARD", "FULL"):
        found += [
            ("the new schema cannot read older events", i) for i in incompatibilities(new, old)
        ]
    if base in ("FORWARD", "FULL"):
        found += [
            ("readers of the older schema cannot read new events", i)
            for i in incompatibilities(old, new)
        ]
    return found
