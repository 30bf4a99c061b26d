"""The promise of default deny, checked on generated records and generated grants: no value
of a field that was masked, not granted, or in a filtered-out row appears anywhere in the
bytes delivered to the subscriber (nor in the audit records); and, on generated datasets with
generated classifications, no grant that validates lets a personal or sensitive value out
through a derived field, a rename, a lookup or a row filter unless an approval names it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support.checkout import ROOT
from tests.support.grant_helpers import compile_grant
from xbus.core.catalog import Catalog, Dataset, dataset_from_schema
from xbus.core.envelope import Op, change_event
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData
from xbus.streams.grants import Grant
from xbus.streams.policy import check_and_compile
from xbus.streams.routing import Router, ViewEncoders
from xbus.streams.state import PolicySnapshot

CATALOG = Catalog.load(ROOT / "schemas")
DATASET = CATALOG.get("market_regulation", "business_licence")
STRING_FIELDS = [
    f["name"] for f in DATASET.schema["fields"] if f["type"] in ("string", ["null", "string"])
]
STRING_MASKS = [
    {"type": "redact"},
    {"type": "hash"},
    {"type": "pseudonym"},
    {"type": "show_first", "n": 2},
    {"type": "show_last", "n": 3},
    {"type": "district"},
    {"type": "nullify"},
]
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
# The generated values are not real identifiers; the engine does not check formats anyway.
UNCHECKED_FORMATS = {
    **DATASET.schema,
    "fields": [
        {k: v for k, v in f.items() if k != "xbus.format"} for f in DATASET.schema["fields"]
    ],
}

# Values distinctive enough that finding one in the output bytes means it leaked: each starts
# with its own marker (Z, the field's number, Z) that the random rest cannot contain, so no
# value is part of another.
secret = st.text(
    alphabet="ABCDEFGHJKLMNPQRSTUVWXYabcdefghijkmnpqrstuvwxy", min_size=10, max_size=24
)


def treatment(name: str) -> st.SearchStrategy[Any]:
    """How a field may be sent: withheld, as it is, or under a mask that fits it (``district``
    fits only addresses and division codes)."""
    fitting = [
        m
        for m in STRING_MASKS
        if m["type"] != "district" or "address" in name or "district" in name
    ]
    return st.one_of(st.just("withheld"), st.just("as_is"), st.sampled_from(fitting))


class _Given:
    """A decoder that hands the engine an event already decoded."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event

    def decode(self, value: bytes | None) -> dict[str, Any]:
        return self.event


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "property-test-secret-key")


@settings(max_examples=150, deadline=None)
@given(
    values=st.tuples(
        *[secret.map(lambda v, i=i: f"Z{i}Z{v}") for i in range(len(STRING_FIELDS))]
    ).map(lambda v: dict(zip(STRING_FIELDS, v, strict=True))),
    treatments=st.fixed_dictionaries({name: treatment(name) for name in STRING_FIELDS}),
    row_allowed=st.booleans(),
    use_filter=st.booleans(),
    op=st.sampled_from([Op.CREATE, Op.UPDATE, Op.DELETE]),
)
def test_nothing_withheld_masked_or_filtered_reaches_the_subscriber(
    values: dict[str, str],
    treatments: dict[str, Any],
    row_allowed: bool,
    use_filter: bool,
    op: Op,
) -> None:
    record, errors = RecordValidator(UNCHECKED_FORMATS).conform(
        {**DemoData(seed=1).business_licence(), **values}, "after"
    )
    assert errors == []
    fields: dict[str, Any] = {"status": {}}  # a public enum, so no grant is empty
    for name, how in treatments.items():
        if how == "as_is":
            fields[name] = {"approved_unmasked": "P-1"}
        elif how != "withheld":
            fields[name] = {"mask": how}
    status = record["status"] if row_allowed else "REVOKED"
    rows = f"(after != null ? after : before).status == '{status}'" if use_filter else None
    grant = compile_grant(
        Grant.model_validate(
            {
                "grant": "property-grant",
                "subscriber": "prober",
                "dataset": DATASET.qualified_name,
                "purpose": "p",
                "legal_basis": "l",
                "approval": "P-1",
                "valid_from": "2026-01-01T00:00:00+00:00",
                "rows": rows,
                "fields": fields,
            }
        ),
        CATALOG,
    )
    event = change_event(
        department=DATASET.department,
        dataset=DATASET.name,
        op=op,
        after=None if op is Op.DELETE else record,
        before=record if op is not Op.CREATE else None,
        system="t",
    )
    router = Router(
        lambda: PolicySnapshot({DATASET.topic: (grant,)}, {}), _Given(event), ViewEncoders(None)
    )

    routing = router.route(DATASET.topic, 0, 0, DATASET.key_of(record).encode(), b"ignored", NOW)

    filtered_out = use_filter and not row_allowed
    assert len(routing.deliveries) == (0 if filtered_out else 1)
    delivered = b"".join(o.value or b"" for _, o in routing.deliveries)
    audit = b"".join(o.value or b"" for o in routing.audit)
    for name, value in values.items():
        assert value.encode() not in audit
        leaked = value.encode() in delivered
        if filtered_out or treatments[name] != "as_is":
            assert not leaked, f"{name} ({treatments[name]}) leaked"
        else:
            assert leaked, f"{name} was granted as is but did not arrive"


# -- Generated datasets, and grants that derive, rename, look up and filter ------------------
#
# Every string field holds a distinctive marker (as above), or null where it is optional. A
# grant that validates must deliver no marker of a personal or sensitive field — in the
# values, the record keys (the business key is of any class) or the headers — unless the grant
# approves that field unmasked, or approves a derived field or a lookup that reads it; and it
# must deliver a view that encodes with its own schema (no dead letter on a well-formed event).

CLASSES = ("public", "internal", "personal", "sensitive")
PROTECTED = ("personal", "sensitive")
DERIVED_MASKS = [
    {"type": "redact"},
    {"type": "hash"},
    {"type": "pseudonym"},
    {"type": "show_first", "n": 40},  # longer than any value: still hides a character
    {"type": "show_last", "n": 3},
    {"type": "nullify"},
]
# How a derived field reads one field ({f}: its path); the type it is declared with; whether
# it copies the value out (so that the marker is in the bytes when it is let out).
READS = [
    ("record.{f}", "string", True),
    ("'tel:' + record.{f}", "string", True),
    ("record['{f}']", "string", True),
    ("string(dyn(record).{f})", "string", True),
    ("[record][0].{f}", "string", True),
    ("{{'k': record}}.k.{f}", "string", True),
    ("[record.{f}].map(x, x + '!')[0]", "string", True),
    ("[record.{f}].filter(x, x.startsWith('Z'))[0]", "string", True),
    ("[record.{f}].exists(x, x.startsWith('Z')) ? 'y' : 'n'", "string", False),
    ("size(record.{f})", "int", False),
    ("record.{f}", "int", True),  # a string declared int: never validates
    ("dyn(record).{f}", "string", True),  # of a type known only at run time: never validates
]
ROW_FILTERS_READING = [
    "after != null && after.{f} != ''",
    "[after].exists(r, r != null && r.{f} != null && r.{f}.startsWith('Z'))",
    "after.no_such_field == 'x'",  # never validates
    "size(after.{f}) + 1",  # not a bool: never validates
]
NAMES = ["a", "b", "d0", "d1", "f0", "f1", "person", "not-a-name"]


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    # The business key is a field like any other: of any class.
    fields: list[dict[str, Any]] = [
        {"name": "key", "type": "string", "classification": draw(st.sampled_from(CLASSES))}
    ]
    for i in range(draw(st.integers(1, 5))):
        optional = draw(st.booleans())
        fields.append(
            {
                "name": f"f{i}",
                "type": ["null", "string"] if optional else "string",
                "classification": draw(st.sampled_from(CLASSES)),
                **({"default": None} if optional else {}),
            }
        )
    if draw(st.booleans()):
        fields.append(
            {
                "name": "person",
                "classification": draw(st.sampled_from(CLASSES)),
                "type": {
                    "type": "record",
                    "name": "Person",
                    "fields": [
                        {
                            "name": n,
                            "type": "string",
                            "classification": draw(st.sampled_from(CLASSES)),
                        }
                        for n in ("id_number", "name")
                    ],
                },
            }
        )
    schema = {
        "type": "record",
        "name": "Thing",
        "namespace": "gov.prop",
        "xbus.department": "prop",
        "xbus.business_key": ["key"],
        "xbus.sharing": "unconditional",
        "fields": fields,
    }
    return dataset_from_schema(
        schema, CATALOG.envelope, where="generated", department="prop", name="thing"
    )


def optional(dataset: Dataset, name: str) -> bool:
    """Whether the top-level field ``name`` may be null."""
    return isinstance(dataset.field(name)["type"], list)


def _leaves(dataset: Dataset) -> list[str]:
    parents = {p.rsplit(".", 1)[0] for p in dataset.classifications if "." in p}
    return [p for p in dataset.classifications if p not in parents]


@st.composite
def grants_on(draw: st.DrawFn, dataset: Dataset) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """A grant on ``dataset`` as its file holds it, and for each field the ways the grant
    lets it out unmasked with an approval (so that its value may arrive)."""
    leaves = _leaves(dataset)
    approved: dict[str, set[str]] = {p: set() for p in leaves}
    fields: dict[str, Any] = {}
    for path in [*leaves, "person"] if "person" in dataset.classifications else leaves:
        how = draw(st.sampled_from(["withheld", "as_is", "approved", "masked"]))
        if how == "withheld":
            continue
        rule: dict[str, Any] = {}
        if how == "approved":
            rule["approved_unmasked"] = "P-1"
            for leaf in leaves:
                if leaf == path or leaf.startswith(f"{path}."):
                    approved[leaf].add(f"fields.{path}")
        elif how == "masked":
            rule["mask"] = draw(st.sampled_from(STRING_MASKS[:-2] + [DERIVED_MASKS[3]]))
        if draw(st.integers(0, 4)) == 0:
            rule["rename"] = draw(st.sampled_from(NAMES))
        fields[path] = rule
    derive: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(leaves))
        template, declared, copies = draw(st.sampled_from(READS))
        rule = {"cel": template.format(f=path), "type": declared}
        if draw(st.integers(0, 3)) == 0:
            rule["nullable"] = False
        name = draw(st.sampled_from(NAMES))
        treatment = draw(st.sampled_from(["none", "approved", "masked"]))
        if treatment == "approved":
            rule["approved_unmasked"] = "P-1"
            if copies:
                approved[path].add(f"derive.{name}")
        elif treatment == "masked" and declared == "string":
            rule["mask"] = draw(st.sampled_from(DERIVED_MASKS))
        derive[name] = rule
    lookup: dict[str, Any] = {}
    if draw(st.booleans()):
        path = draw(st.sampled_from(leaves))
        name = draw(st.sampled_from(NAMES))
        lookup[name] = {"table": "same", "key": path}
        if draw(st.booleans()):
            lookup[name]["approved_unmasked"] = "P-1"
            approved[path].add(f"lookup.{name}")
    rows = None
    if draw(st.booleans()):
        rows = draw(st.sampled_from(ROW_FILTERS_READING)).format(f=draw(st.sampled_from(leaves)))
    grant = {
        "grant": "property-grant",
        "subscriber": "prober",
        "dataset": "prop.thing",
        "purpose": "p",
        "legal_basis": "l",
        "valid_from": "2026-01-01T00:00:00+00:00",
        "rows": rows,
        "fields": fields,
        "derive": derive,
        "lookup": lookup,
    }
    return grant, approved


@settings(max_examples=2000, deadline=None)
@given(data=st.data(), op=st.sampled_from([Op.CREATE, Op.UPDATE, Op.DELETE]))
def test_no_grant_that_validates_lets_a_protected_value_out_unapproved(
    data: st.DataObject, op: Op
) -> None:
    dataset = data.draw(datasets())
    grant_file, approved = data.draw(grants_on(dataset))
    catalog = Catalog([dataset], CATALOG.envelope)
    try:
        grant = Grant.model_validate(grant_file)
    except ValidationError:
        return  # refused as a file
    compiled = check_and_compile(grant, catalog)
    if isinstance(compiled, list):
        return  # refused against the dataset
    leaves = _leaves(dataset)
    values = {p: f"Z{i}Z" + data.draw(secret) for i, p in enumerate(leaves)}
    nulls = {  # an optional field may be null: a validated grant must still deliver
        p for p in leaves if "." not in p and optional(dataset, p) and data.draw(st.booleans())
    }
    record: dict[str, Any] = {"person": {}} if "person" in dataset.classifications else {}
    for path, value in values.items():
        if path.startswith("person."):
            record["person"][path.split(".", 1)[1]] = value
        else:
            record[path] = None if path in nulls else value
    event = change_event(
        department="prop",
        dataset="thing",
        op=op,
        after=None if op is Op.DELETE else record,
        before=record if op is not Op.CREATE else None,
        system="t",
    )
    tables = {"same": {v: v for v in values.values()}}
    router = Router(
        lambda: PolicySnapshot({dataset.topic: (compiled,)}, tables),
        _Given(event),
        ViewEncoders(None),
    )

    routing = router.route(dataset.topic, 0, 0, dataset.key_of(record).encode(), b"-", NOW)

    assert routing.dead_letters == [], [dict(d.headers) for d in routing.dead_letters]
    delivered = b"".join(
        (o.value or b"") + (o.key or b"") + b"".join(v for _, v in o.headers)
        for _, o in routing.deliveries
    )
    audit = b"".join(o.value or b"" for o in routing.audit)
    for path, value in values.items():
        assert value.encode() not in audit
        if path in nulls:
            continue
        if dataset.classifications[path] in PROTECTED and value.encode() in delivered:
            assert approved[path], f"{path} ({dataset.classifications[path]}) leaked: {grant_file}"
