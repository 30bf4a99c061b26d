"""From a grant to what it lets through: checking a grant against the catalog, and compiling
it into the subscriber's view schema and a function from a change event to what the
subscriber receives.

Default deny: only the fields a grant names leave. Whether a grant lets an event through at
all is ``xbus.streams.decision``'s to say; this module gives it the compiled row filter and
the transformation, which raises ``GrantFailed`` where a derived field or a mask fails.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import cel

from xbus.core.avro_names import PRIMITIVES, NamedTypes, full_name
from xbus.core.catalog import Catalog, Dataset
from xbus.core.envelope import Record, envelope_schema
from xbus.core.errors import CatalogError
from xbus.core.topics import delivery_topic
from xbus.streams.derivations import derived_fields, looked_up_fields, mask_problem
from xbus.streams.exceptions import GrantFailed
from xbus.streams.expression_check import (
    check_expression,
    event_variables,
    read_fields,
)
from xbus.streams.expressions import (
    cel_value,
    compile_cel,
    failure_text,
)
from xbus.streams.grants import FieldRule, Grant
from xbus.streams.keys import RecordKey
from xbus.streams.masks import Nullify, base_type, kind_of

# One step of a view's transformation: read the source record, write the view record.
Step = Callable[[dict[str, Any], dict[str, Any]], None]


class ReferenceTables(Protocol):
    """Where lookups find their values: the reference tables in force."""

    def get(self, table: str, key: str) -> str | None: ...


Transform = Callable[[Record | None, str, dt.datetime, ReferenceTables | None], Record | None]


def _qualified(t: Any, names: NamedTypes, namespace: str, emitted: set[str]) -> Any:
    """A copy of type ``t`` with every named type under its full original name, defined
    once in the view and referred to by name after that."""
    if isinstance(t, list):
        return [_qualified(b, names, namespace, emitted) for b in t]
    if isinstance(t, str):
        if t in PRIMITIVES:
            return t
        full = full_name(t, namespace)
        if full in emitted:
            return full
        definition = names.lookup(t, namespace)
        assert definition is not None, f"unknown Avro type {t}"
        return _qualified(definition, names, namespace, emitted)
    kind = t.get("type")
    if kind in ("record", "enum", "fixed"):
        full = full_name(t["name"], t.get("namespace", namespace))
        if full in emitted:
            return full
        emitted.add(full)
        out = {k: v for k, v in t.items() if k not in ("fields", "namespace")}
        out["name"] = full
        if kind == "record":
            inner = full.rsplit(".", 1)[0]
            out["fields"] = [
                {**f, "type": _qualified(f["type"], names, inner, emitted)} for f in t["fields"]
            ]
        return out
    if kind == "array":
        return {**t, "items": _qualified(t["items"], names, namespace, emitted)}
    if kind == "map":
        return {**t, "values": _qualified(t["values"], names, namespace, emitted)}
    return copy.deepcopy(t)


@dataclass
class _Builder:
    """Walks a dataset schema along a grant's field rules, collecting the view's fields, the
    transformation and the problems found."""

    grant: Grant
    dataset: Dataset
    names: NamedTypes
    problems: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    emitted: set[str] = field(default_factory=set)
    # Per top-level view field, in order: the source field whose value it is unchanged
    # (same name or renamed, unmasked), or None where a step computes it.
    copied: list[str | None] = field(default_factory=list)

    def record(
        self, schema: dict[str, Any], prefix: str, namespace: str, selected: set[str], covered: bool
    ) -> tuple[list[dict[str, Any]], list[Step]]:
        rules = self.grant.fields
        fields: list[dict[str, Any]] = []
        steps: list[Step] = []
        inner_space = full_name(schema["name"], schema.get("namespace", namespace)).rsplit(".", 1)[
            0
        ]
        for f in schema["fields"]:
            path = f"{prefix}{f['name']}"
            whole = path in selected
            nested = {p for p in selected if p.startswith(f"{path}.")}
            if not whole and not nested:
                continue
            rule = rules.get(path) or FieldRule.model_validate({})
            out_name = rule.rename or f["name"]
            ftype = base_type(f["type"])
            if isinstance(ftype, str) and ftype not in PRIMITIVES:
                ftype = self.names.lookup(ftype, inner_space) or ftype
            optional = isinstance(f["type"], list) and "null" in f["type"]
            is_record = isinstance(ftype, dict) and ftype.get("type") == "record"
            if is_record and nested and rule.mask is None:
                keep = nested | (
                    {f"{path}.{c['name']}" for c in ftype["fields"]} if whole else set()
                )
                sub_fields, sub_steps = self.record(
                    ftype,
                    f"{path}.",
                    inner_space,
                    keep,
                    covered or rule.approved_unmasked is not None,
                )
                view_type: Any = {
                    "type": "record",
                    "name": f"{_view_name(path)}",
                    "namespace": f"deliver.{self.grant.subscriber}",
                    "fields": sub_fields,
                }
                steps.append(_nested(f["name"], out_name, sub_steps))
                if not prefix:
                    self.copied.append(None)
            else:
                view_type, step = self.leaf(f, path, out_name, ftype, inner_space, rule, covered)
                steps.append(step)
                if not prefix:
                    self.copied.append(f["name"] if rule.mask is None else None)
            if (
                optional
                and view_type != "null"
                and not (isinstance(view_type, list) and "null" in view_type)
            ):
                view_type = ["null", view_type]
            entry = {
                "name": out_name,
                "type": view_type,
                "classification": self.dataset.classifications.get(path, "public"),
            }
            if "doc" in f:
                entry["doc"] = f["doc"]
            if isinstance(view_type, list) and view_type[0] == "null":
                entry["default"] = None
            if any(e["name"] == out_name for e in fields):
                self.problems.append(
                    (
                        ("fields", path, "rename") if rule.rename else ("fields", path),
                        f"fields.{path}: the view already has a field {out_name!r} "
                        + (f"in {prefix.rstrip('.')}" if prefix else "at its top level"),
                    )
                )
            fields.append(entry)
        return fields, steps

    def leaf(
        self,
        f: dict[str, Any],
        path: str,
        out_name: str,
        ftype: Any,
        namespace: str,
        rule: FieldRule,
        covered: bool,
    ) -> tuple[Any, Step]:
        name = f["name"]
        mask = rule.mask
        if mask is None:
            if not covered and rule.approved_unmasked is None:
                self._check_unmasked(path, ftype, namespace)
            view_type = _qualified(f["type"], self.names, namespace, self.emitted)
            return (
                base_type(view_type) if not isinstance(f["type"], list) else view_type,
                lambda src, dst: dst.__setitem__(out_name, src[name]),
            )
        kind = kind_of(
            ftype
            if not isinstance(ftype, dict) or ftype.get("type") != "record"
            else {"type": "record"}
        )
        if kind not in mask.accepts():
            self.problems.append(
                (
                    ("fields", path, "mask"),
                    f"fields.{path}: mask {mask.type} does not apply to a "
                    f"{kind if kind != 'other' else _type_name(ftype)} field",
                )
            )
            return "null", lambda src, dst: None
        wrong = mask_problem(mask, kind, ftype, path.rsplit(".", 1)[-1])
        if wrong:
            self.problems.append((("fields", path, "mask"), f"fields.{path}: {wrong}"))
            return "null", lambda src, dst: None
        self.masks.append(f"{path}:{mask.type}")
        fn = mask.function()
        result = mask.result_type(_qualified(ftype, self.names, namespace, self.emitted))
        if isinstance(mask, Nullify):
            return "null", lambda src, dst: dst.__setitem__(out_name, None)

        mask_type = mask.type

        def apply(src: dict[str, Any], dst: dict[str, Any]) -> None:
            value = src[name]
            if value is None:
                dst[out_name] = None
                return
            try:
                dst[out_name] = fn(value)
            except Exception as exc:
                raise GrantFailed(
                    f"mask {mask_type} on {path} failed: {failure_text(exc)}"
                ) from exc

        return result, apply

    def _check_unmasked(self, path: str, ftype: Any, namespace: str) -> None:
        """A personal or sensitive value may leave unmasked only with an explicit approval."""
        leaves = [path]
        if isinstance(ftype, dict) and ftype.get("type") == "record":
            leaves = [p for p in self.dataset.classifications if p.startswith(f"{path}.")]
        for leaf in leaves:
            if self.dataset.classifications.get(leaf) in ("personal", "sensitive"):
                self.problems.append(
                    (
                        ("fields", path),
                        f"fields.{path}: {leaf} is {self.dataset.classifications[leaf]} and would "
                        f"leave unmasked; mask it, or name the approval that allows it with "
                        f"approved_unmasked",
                    )
                )


def _view_name(path: str) -> str:
    return "View_" + path.replace(".", "_")


def _type_name(t: Any) -> str:
    if isinstance(t, dict):
        return str(t.get("logicalType") or t.get("type"))
    return str(t)


def _nested(name: str, out_name: str, steps: list[Step]) -> Callable[..., None]:
    def apply(src: dict[str, Any], dst: dict[str, Any]) -> None:
        inner = src[name]
        if inner is None:
            dst[out_name] = None
            return
        out: dict[str, Any] = {}
        for step in steps:
            step(inner, out)
        dst[out_name] = out

    return apply


@dataclass(frozen=True)
class ViewSteps:
    """The transformation a view plan (``xbus.streams.view_plans``) reuses, field by field:
    per top-level view field the source field it copies (or None) and the step that
    computes it; then what adds the derived and the looked-up fields."""

    fields: tuple[tuple[str | None, Step], ...]
    add_derived: Callable[[Record, str, dt.datetime, Record], None] | None
    add_looked_up: Callable[[Record, ReferenceTables | None, Record], None] | None


@dataclass(frozen=True)
class CompiledGrant:
    """A grant made ready to apply: its view schema and transformations."""

    grant: Grant
    version: int
    dataset: Dataset
    view_record: dict[str, Any]
    view_schema: dict[str, Any]
    rows: Any
    transform: Transform
    masks: tuple[str, ...]
    row_reads: Mapping[str, str] = field(default_factory=dict)
    record_key: RecordKey | None = None
    steps: ViewSteps | None = None

    # Read per event and grant, so worked out once, here. (Plain fields rather than cached
    # properties: compiled by mypyc, a cached property is computed again on every read.)
    row_fields: frozenset[str] = field(init=False, repr=False, compare=False)
    """The top-level fields of the dataset the row filter reads."""
    row_names: frozenset[str] = field(init=False, repr=False, compare=False)
    """The words of the row filter: a variable of the event it does not name, it cannot
    read."""
    window: tuple[float, float] = field(init=False, repr=False, compare=False)
    """The validity window as POSIX timestamps (``valid_until`` none: infinity): the engine
    compares these with one timestamp per event, which gives what comparing the aware
    datetimes gives (a microsecond is wider than a timestamp's rounding) at a fraction of its
    cost."""
    topic: str = field(init=False, repr=False, compare=False)
    """The subscriber's topic for this dataset."""

    def __post_init__(self) -> None:
        g = self.grant
        until = math.inf if g.valid_until is None else g.valid_until.timestamp()
        derived = {
            "row_fields": frozenset(path.split(".", 1)[0] for path in self.row_reads),
            "row_names": frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", g.rows or "")),
            "window": (g.valid_from.timestamp(), until),
            "topic": delivery_topic(g.subscriber, self.dataset.name),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # the dataclass is frozen


def check_and_compile(
    grant: Grant, catalog: Catalog, version: int = 1
) -> CompiledGrant | list[tuple[tuple[str, ...], str]]:
    """The compiled grant, or every problem with it as ``(key path, message)``."""
    problems: list[tuple[tuple[str, ...], str]] = []
    try:
        dataset = catalog.find(grant.dataset) if "." in grant.dataset else None
    except CatalogError as exc:
        return [(("dataset",), f"dataset: {exc}")]
    if dataset is None:
        return [(("dataset",), "dataset: write it as department.dataset")]
    if dataset.sharing == "none":
        problems.append(
            (
                ("dataset",),
                f"dataset: {dataset.qualified_name} has sharing class "
                "'none': it never leaves its department",
            )
        )
    if dataset.sharing == "conditional" and not grant.approval:
        problems.append(
            (
                ("dataset",),
                f"approval: {dataset.qualified_name} is shared only "
                "under an approved grant; name the approval",
            )
        )
    if grant.valid_until is not None and grant.valid_until <= grant.valid_from:
        problems.append((("valid_until",), "valid_until: must be after valid_from"))
    known = set(dataset.classifications)
    for path in grant.fields:
        if path not in known:
            near = sorted(p for p in known if "." not in p)
            problems.append(
                (
                    ("fields", path),
                    f"fields.{path}: no such field in "
                    f"{dataset.qualified_name} (its fields: {', '.join(near)})",
                )
            )
    names = NamedTypes(dataset.schema)
    builder = _Builder(grant, dataset, names)
    selected = {p for p in grant.fields if p in known}
    fields, steps = builder.record(
        dataset.schema, "", dataset.schema.get("namespace", ""), selected, covered=False
    )
    problems += builder.problems

    rows = None
    row_reads: dict[str, str] = {}
    if grant.rows:
        rows, error = compile_cel(grant.rows, "rows")
        variables = event_variables(dataset, grant.operations)
        checked = check_expression(grant.rows, variables) if not error else None
        if error or checked is None:
            problems.append((("rows",), error or "rows: CEL does not compile"))
        elif checked.errors:
            problems += [(("rows",), f"rows: {e}") for e in checked.errors]
        elif checked.type.kind != "bool":
            problems.append(
                (("rows",), f"rows: a row filter gives a bool; this one gives a {checked.type}")
            )
        elif checked.type.nullable or checked.unguarded:
            problems.append(
                (
                    ("rows",),
                    "rows: may fail on a well-formed event: it reads what may be null there "
                    "(after on a DELETE, before on a CREATE or SNAPSHOT, an optional field) "
                    "without testing it first, e.g. after != null && after.status == 'ACTIVE'",
                )
            )
        else:
            row_reads = read_fields(dataset, checked.reads)
    out_names = {f["name"] for f in fields}
    derived, derived_entries = derived_fields(grant, dataset, out_names, problems)
    fields += derived_entries
    fields += looked_up_fields(grant, dataset, out_names, problems)
    if problems:
        return problems

    view_record = {
        "type": "record",
        "name": f"{dataset.schema['name']}View",
        "namespace": f"deliver.{grant.subscriber}",
        "doc": f"{grant.subscriber}'s view of {dataset.qualified_name} under grant "
        f"{grant.grant}: {grant.purpose}",
        "fields": fields,
    }
    lookups = [(name, lookup.table, lookup.key.split(".")) for name, lookup in grant.lookup.items()]

    def add_derived(record: Record, op: str, now: dt.datetime, out: Record) -> None:
        """The derived fields of ``record``'s view, into ``out``."""
        # One context per record, shared by every derived field.
        context = cel.Context({"record": cel_value(record), "op": op, "now": now})
        for d in derived:
            out[d.name] = d.value(context)

    # What the derived fields read of a record (as the expression check found): converting
    # the rest for CEL costs its time and changes no value. The reference path above
    # converts it all, and the differential test compares the two.
    derived_reads = frozenset().union(*(d.reads for d in derived))

    def add_derived_pruned(record: Record, op: str, now: dt.datetime, out: Record) -> None:
        read = {f: cel_value(record[f]) for f in derived_reads if f in record}
        context = cel.Context({"record": read, "op": op, "now": now})
        for d in derived:
            out[d.name] = d.value(context)

    def add_looked_up(record: Record, tables: ReferenceTables | None, out: Record) -> None:
        """The looked-up fields of ``record``'s view, into ``out``."""
        for name, table, key_path in lookups:
            value: Any = record
            for part in key_path:
                value = value.get(part) if isinstance(value, dict) else None
            out[name] = None if value is None or tables is None else tables.get(table, str(value))

    def transform(
        record: Record | None, op: str, now: dt.datetime, tables: ReferenceTables | None
    ) -> Record | None:
        """The view of ``record``; raises ``GrantFailed`` where a mask or a derived field
        fails."""
        if record is None:
            return None
        out: Record = {}
        for step in steps:
            step(record, out)
        if derived:
            add_derived(record, op, now, out)
        if lookups:
            add_looked_up(record, tables, out)
        return out

    return CompiledGrant(
        grant,
        version,
        dataset,
        view_record,
        envelope_schema(view_record, catalog.envelope, name="DeliveredEvent"),
        rows,
        transform,
        tuple(builder.masks),
        row_reads,
        RecordKey(grant, dataset),
        ViewSteps(
            tuple(zip(builder.copied, steps, strict=True)),
            add_derived_pruned if derived else None,
            add_looked_up if lookups else None,
        ),
    )
