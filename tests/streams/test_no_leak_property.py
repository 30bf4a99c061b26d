"""The promise of default deny, checked on generated records and generated grants: no value
of a field that was masked, not granted, or in a filtered-out row appears anywhere in the
bytes delivered to the subscriber (nor in the audit records)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.checkout import ROOT
from tests.support.grant_helpers import compile_grant
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData
from xbus.streams.grants import Grant
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
treatment = st.one_of(st.just("withheld"), st.just("as_is"), st.sampled_from(STRING_MASKS))


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
    treatments=st.fixed_dictionaries({name: treatment for name in STRING_FIELDS}),
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

    routing = router.route(DATASET.topic, 0, 0, b"k", b"ignored", NOW)

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
