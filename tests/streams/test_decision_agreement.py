"""One grant decision: on generated events and grants (validity windows, operations, masks,
row filters and derived fields that hold, fail or raise), what ``xbus grants explain``
reports and what the engine's routing writes agree exactly: the same outcome and reason in
the audit record, the same view in the delivered bytes, a dead letter for each failure; and
no reason carries a value of the record.

This is also the differential test of the engine's fast path: explain makes the decision on
the reference path (the whole record in the row filter's and derived fields' CEL contexts,
the view encoded whole by fastavro), the routing on the fast one (contexts pruned to the
fields an expression reads, views spliced from the source bytes), and every delivered view
must be spliced, not encoded whole."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.checkout import ROOT
from tests.support.grant_helpers import compile_grant
from xbus.core import headers
from xbus.core.catalog import Catalog
from xbus.core.envelope import ChangeEvent, Op, change_event, record_full_name, with_union_branches
from xbus.core.metrics import ENGINE_VIEWS_ENCODED_WHOLE
from xbus.core.serde import WireEncoder, WriterSchemas
from xbus.core.topics import DEAD_LETTER_TOPIC, subscriber_dead_letter_topic
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData
from xbus.streams.explanation import as_decoded, explain
from xbus.streams.grants import Grant
from xbus.streams.policy import CompiledGrant
from xbus.streams.routing import Router, ViewEncoders, metric_child
from xbus.streams.state import PolicySnapshot

CATALOG = Catalog.load(ROOT / "schemas")
DATASET = CATALOG.get("market_regulation", "business_licence")
NOW = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
TABLES = {"districts": {"310115": "浦东新区", "310104": "徐汇区"}}
UNCHECKED_FORMATS = {
    **DATASET.schema,
    "fields": [
        {k: v for k, v in f.items() if k != "xbus.format"} for f in DATASET.schema["fields"]
    ],
}

STRING_MASKS: list[dict[str, Any]] = [
    {"type": "redact"},
    {"type": "hash"},
    {"type": "pseudonym"},
    {"type": "show_first", "n": 2},
    {"type": "show_last", "n": 4},
    {"type": "nullify"},
]
# What each field may be given as: as it is, or under a mask that fits its type.
TREATMENTS: dict[str, list[Any]] = {
    "credit_code": ["as_is", *STRING_MASKS],
    "name": ["as_is", {"type": "show_first", "n": 1}, {"type": "hash"}],
    "legal_representative_id": ["as_is", *STRING_MASKS],
    "registered_capital": [
        "as_is",
        {"type": "round", "step": "100000"},
        {"type": "hash"},
        {"type": "pseudonym"},
        {"type": "nullify"},
    ],
    "established_on": ["as_is", {"type": "year"}, {"type": "hash"}, {"type": "redact"}],
    "district_code": ["as_is", {"type": "district"}],
    "address": ["as_is", {"type": "district"}, {"type": "redact", "text": "hidden"}],
    "contact_phone": ["as_is", {"type": "show_last", "n": 4}, {"type": "nullify"}],
    "status": ["as_is", {"type": "redact"}],
    "issued_at": ["as_is", {"type": "year"}, {"type": "hash"}],
}
# Row filters that hold, do not, or raise on some events (validation refuses those that
# would raise where after or before is null, or give no boolean).
ROW_FILTERS = [
    None,
    "op == 'CREATE'",
    "before == null",
    "after != null && after.status == 'ACTIVE'",
    "(after != null ? after : before).registered_capital >= 1000000.0",
    "ts_ms > timestamp('2020-01-01T00:00:00Z')",  # ts_ms is a timestamp once decoded
    "size((after != null ? after : before).name) / 0 > 1",
    "(after != null ? after : before)[op] == 1",  # no such field: CREATE, UPDATE...
    "int((after != null ? after : before).name) > 0",
    "duration((after != null ? after : before).legal_representative_id) > duration('1s')",
    "(after != null ? after : before).name + dyn(1) == 2",  # string + int raises
]
# Derived fields that hold or raise (validation refuses those of another type than declared);
# one that raises is null where nullable, and fails the grant's event where not.
DERIVED = [
    None,
    ("record.registered_capital >= 1000000.0 ? 'large' : 'small'", "string", True),
    ("now.getFullYear() - record.established_on.getFullYear()", "int", True),
    ("size(record.name) / 0", "int", True),
    ("size(record.name) / 0", "int", False),
    ("record[op] == 'x'", "boolean", True),  # no such field: CREATE, UPDATE...
    ("size(record.contact_phone)", "int", True),  # raises where the phone is null
    ("int(record.legal_representative_id)", "long", True),
    ("9223372036854775807 + size(record.name)", "long", True),
    ("9223372036854775807 + size(record.name)", "long", False),
    ("record.registered_capital * 2.0", "double", True),
]
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
OPS = [Op.CREATE, Op.UPDATE, Op.DELETE, Op.SNAPSHOT]


def _licences() -> list[dict[str, Any]]:
    validator = RecordValidator(UNCHECKED_FORMATS)
    found = []
    for seed in range(4):
        record, errors = validator.conform(
            {
                **DemoData(seed=seed + 1).business_licence(),
                "established_on": dt.date(2019 + seed, 3, 1 + seed),
                "issued_at": dt.datetime(2026, 1, 2 + seed, 9, tzinfo=dt.UTC),
                "contact_phone": None if seed % 2 else "13912345678",
            },
            "after",
        )
        assert errors == []
        found.append(record)
    return found


LICENCES = _licences()


class _OneSchema:
    """A registry that knows one schema, the dataset's envelope, as id 0."""

    def get_schema(self, schema_id: int) -> Schema:
        assert schema_id == 0
        return Schema(json.dumps(DATASET.envelope), "AVRO")


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "agreement-test-secret-key")


@st.composite
def grants(draw: st.DrawFn, number: int) -> Grant:
    chosen = draw(
        st.dictionaries(
            st.sampled_from(sorted(TREATMENTS)),
            st.none(),
            min_size=1,
        )
    )
    fields: dict[str, Any] = {}
    for name in chosen:
        how = draw(st.sampled_from(TREATMENTS[name]))
        rule: dict[str, Any] = {"approved_unmasked": "P-1"} if how == "as_is" else {"mask": how}
        if draw(st.booleans()) and name != "status":
            rule["rename"] = f"{name}_given"
        fields[name] = rule
    valid_from = NOW + draw(st.sampled_from([-2 * DAY, -HOUR, dt.timedelta(0), HOUR]))
    lasting = draw(st.sampled_from([None, HOUR, 2 * HOUR, DAY, 3 * DAY]))
    derived = draw(st.sampled_from(DERIVED))
    return Grant.model_validate(
        {
            "grant": f"agreement-{number}",
            "subscriber": f"subscriber_{number}",
            "dataset": DATASET.qualified_name,
            "purpose": "p",
            "legal_basis": "l",
            "approval": "P-1",
            "valid_from": valid_from,
            "valid_until": None if lasting is None else valid_from + lasting,
            "operations": draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=4, unique=True)),
            "rows": draw(st.sampled_from(ROW_FILTERS)),
            "fields": fields,
            "derive": {}
            if derived is None
            else {
                "extra": {
                    "cel": derived[0],
                    "type": derived[1],
                    "nullable": derived[2],
                    "approved_unmasked": "P-1",
                }
            },
            "lookup": (
                {"district_name": {"table": "districts", "key": "district_code"}}
                if draw(st.booleans())
                else {}
            ),
        }
    )


@st.composite
def events(draw: st.DrawFn) -> ChangeEvent:
    licence = {
        **draw(st.sampled_from(LICENCES)),
        "status": draw(st.sampled_from(["ACTIVE", "SUSPENDED"])),
        "registered_capital": draw(
            st.sampled_from(
                [decimal.Decimal(v) for v in ("0.00", "999999.99", "1000000.00", "52500000.50")]
            )
        ),
        "district_code": draw(st.sampled_from(["310115", "310104", "310120"])),
    }
    op = draw(st.sampled_from(OPS))
    earlier = {**licence, "status": "ACTIVE"}
    return change_event(
        department=DATASET.department,
        dataset=DATASET.name,
        op=op,
        after=None if op is Op.DELETE else licence,
        before={Op.UPDATE: earlier, Op.DELETE: licence}.get(op),
        system="agreement-test",
        ts_ms=int(NOW.timestamp() * 1000) - 5000,
    )


def _assert_key_from_the_view(grant: CompiledGrant, view: ChangeEvent, key: bytes | None) -> None:
    """The credit code keys a delivery only as the view has it (as is or hashed), and never
    where the grant withholds it or masks it so that records could share a value."""
    rule = grant.grant.fields.get("credit_code")
    record = view["after"] or view["before"]
    assert record is not None and key is not None
    if rule is not None and (rule.mask is None or rule.mask.type in ("hash", "pseudonym")):
        assert key.decode() == record[rule.rename or "credit_code"]
    else:
        assert len(key) == 32 and all(c in b"0123456789abcdef" for c in key)


def _wire(grant: CompiledGrant, view: ChangeEvent) -> bytes:
    return WireEncoder(0, grant.view_schema).encode(
        with_union_branches(view, record_full_name(grant.view_record))
    )


@settings(max_examples=1500, deadline=None)
@given(
    event=events(),
    granted=st.integers(min_value=1, max_value=3).flatmap(
        lambda n: st.tuples(*[grants(i) for i in range(n)])
    ),
)
def test_explain_and_the_engine_decide_alike(
    event: ChangeEvent, granted: tuple[Grant, ...]
) -> None:
    compiled = tuple(compile_grant(g, CATALOG) for g in granted)
    snapshot = PolicySnapshot({DATASET.topic: compiled}, TABLES)
    router = Router(
        lambda: snapshot,
        WriterSchemas(_OneSchema()),  # type: ignore[arg-type]
        ViewEncoders(None),
    )
    source = WireEncoder(0, DATASET.envelope).encode(
        with_union_branches(event, record_full_name(DATASET.schema))
    )

    key = DATASET.key_of(event["after"] or event["before"] or {}).encode()
    routing = router.route(DATASET.topic, 2, 40, key, source, NOW)

    [audit] = routing.audit
    decisions = json.loads(audit.value or b"")["decisions"]
    delivered = {grant.grant.grant: output for grant, output in routing.deliveries}
    dead = {dict(o.headers)[headers.GRANT_ID].decode(): o for o in routing.dead_letters}
    assert [d["grant"] for d in decisions] == [g.grant for g in granted]
    for grant, decided in zip(compiled, decisions, strict=True):
        explained = explain(grant, as_decoded(event, DATASET), NOW, snapshot).decision
        grant_id = grant.grant.grant
        assert (decided["decision"], decided["reason"]) == (explained.outcome, explained.reason)
        note(f"{explained.outcome}: {explained.reason.split(':')[0]}")
        assert (explained.view is not None) == (explained.outcome == "delivered")
        if explained.view is not None:
            assert explained.reason == ""
            assert delivered[grant_id].value == _wire(grant, explained.view)
            assert headers.read_origin(dict(delivered[grant_id].headers)[headers.ORIGIN]) == (
                grant_id,
                1,
                DATASET.topic,
                2,
                40,
            )
            whole = metric_child(ENGINE_VIEWS_ENCODED_WHOLE, grant.grant.subscriber, DATASET.name)
            assert router.counts[whole] == 0, "the view was encoded whole, not spliced"
            # The key explain reports is the engine's, and comes from the view.
            assert delivered[grant_id].key == explained.key is not None
            _assert_key_from_the_view(grant, explained.view, explained.key)
        else:
            assert grant_id not in delivered
            assert explained.reason
        if explained.outcome == "failed":
            letter = dead[grant_id]
            letter_headers = dict(letter.headers)
            assert letter_headers[headers.DLQ_REASON] == b"grant_failed"
            assert letter_headers[headers.DLQ_ERROR].decode() == (
                f"grant {grant_id} v1: {explained.reason}"
            )
            if explained.rows_held:
                # The subscriber's own dead letters: the envelope, never the records.
                assert letter.topic == subscriber_dead_letter_topic(grant.grant.subscriber)
                assert letter.key == explained.key
                held = json.loads(letter.value or b"")
                assert "before" not in held and "after" not in held
                assert held["event_id"] == event["event_id"]
            else:  # the row filter failed: the office's, with the original bytes
                assert (letter.topic, letter.key, letter.value) == (
                    DEAD_LETTER_TOPIC,
                    key,
                    source,
                )
        else:
            assert grant_id not in dead
    records = [r for r in (event["before"], event["after"]) if r is not None]
    for record in records:
        for name in ("legal_representative_id", "name", "address", "contact_phone"):
            if record[name] is not None:
                assert str(record[name]).encode() not in (audit.value or b"")
