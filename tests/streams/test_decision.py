"""The grant decision on chosen events: each outcome with its reason, failures that say what
failed without the record's values, and what the routing makes of them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.support.checkout import ROOT
from tests.support.grant_helpers import compile_grant
from xbus.core import headers
from xbus.core.catalog import Catalog
from xbus.core.envelope import ChangeEvent, Op, change_event
from xbus.core.topics import DEAD_LETTER_TOPIC
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData
from xbus.streams.decision import Decision, decide
from xbus.streams.grants import Grant
from xbus.streams.policy import CompiledGrant
from xbus.streams.routing import Router, ViewEncoders
from xbus.streams.state import PolicySnapshot

CATALOG = Catalog.load(ROOT / "schemas")
DATASET = CATALOG.get("market_regulation", "business_licence")
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
LICENCE, _ = RecordValidator(
    {
        **DATASET.schema,
        "fields": [
            {k: v for k, v in f.items() if k != "xbus.format"} for f in DATASET.schema["fields"]
        ],
    }
).conform({**DemoData(seed=7).business_licence(), "contact_phone": None}, "after")


def _grant(**changes: Any) -> CompiledGrant:
    return compile_grant(
        Grant.model_validate(
            {
                "grant": "decision-test",
                "subscriber": "tester",
                "dataset": DATASET.qualified_name,
                "purpose": "p",
                "legal_basis": "l",
                "approval": "T-1",
                "valid_from": "2026-01-01T00:00:00+00:00",
                "fields": {"credit_code": {}, "status": {}},
                **changes,
            }
        ),
        CATALOG,
    )


def _event(op: Op = Op.CREATE) -> ChangeEvent:
    return change_event(
        department=DATASET.department,
        dataset=DATASET.name,
        op=op,
        after=None if op is Op.DELETE else LICENCE,
        before=LICENCE if op is Op.DELETE else None,
        system="t",
    )


@pytest.mark.parametrize(
    ("changes", "op", "expected"),
    [
        ({"valid_from": "2026-12-01T00:00:00+00:00"}, Op.CREATE, ("denied", "not yet valid")),
        (
            {"valid_until": "2026-11-30T00:00:00+00:00"},
            Op.CREATE,
            ("expired", "expired at 2026-11-30T00:00:00+00:00"),
        ),
        ({"operations": ["CREATE"]}, Op.DELETE, ("denied", "operation DELETE not granted")),
        ({"rows": "op == 'UPDATE'"}, Op.CREATE, ("filtered", "row filter is false")),
        (
            {"rows": "size(after.name) / 0 > 1", "operations": ["CREATE"]},
            Op.CREATE,
            ("failed", "row filter failed: division by zero"),
        ),
        (
            {"rows": "after[op] == 1", "operations": ["CREATE"]},  # the record has no field CREATE
            Op.CREATE,
            ("failed", "row filter failed: no such field or key"),
        ),
        (
            {
                "derive": {
                    "n": {
                        "cel": "size(record.name) / 0",
                        "type": "int",
                        "nullable": False,
                    }
                }
            },
            Op.CREATE,
            ("failed", "derive.n failed: division by zero"),
        ),
        (
            {
                "derive": {
                    "n": {
                        "cel": "9223372036854775807 + size(record.name)",
                        "type": "long",
                        "nullable": False,
                    }
                }
            },
            Op.CREATE,
            ("failed", "derive.n failed: arithmetic overflow"),
        ),
        (
            {"derive": {"n": {"cel": "2147483648", "type": "int", "nullable": False}}},
            Op.CREATE,
            None,
        ),
    ],
)
def test_each_outcome_and_its_reason(
    changes: dict[str, Any], op: Op, expected: tuple[str, str] | None
) -> None:
    decision = decide(_grant(**changes), _event(op), NOW)
    if expected is None:  # an int derived field beyond 32 bits
        expected = ("failed", "derive.n gave an int out of the range of int")
    assert (decision.outcome, decision.reason) == expected
    assert decision.view is None


@pytest.mark.parametrize(
    ("cel", "kind"),
    [
        ("size(record.contact_phone)", "int"),  # raises: the phone is null
        ("9223372036854775807 + size(record.name)", "long"),  # overflows
        ("2147483648", "int"),  # beyond 32 bits
    ],
)
def test_a_nullable_derived_field_that_fails_at_run_time_is_null(cel: str, kind: str) -> None:
    """Why: a validated grant's derived field failed at run time and sent every event to the
    dead letters, where the docs promised null."""
    rule = {"cel": cel, "type": kind, "approved_unmasked": "T-1"}
    decision = decide(_grant(derive={"n": rule}), _event(), NOW)
    assert (decision.outcome, decision.reason) == ("delivered", "")
    assert decision.view is not None and decision.view["after"]["n"] is None


def test_a_delivered_view_is_the_envelope_with_the_records_transformed() -> None:
    grant = _grant(
        fields={
            "credit_code": {},
            "legal_representative_id": {"mask": {"type": "show_last", "n": 4}},
        },
        derive={"big": {"cel": "record.registered_capital >= 1000000.0", "type": "boolean"}},
        lookup={"district_name": {"table": "districts", "key": "district_code"}},
    )
    event = _event()
    tables = PolicySnapshot({}, {"districts": {LICENCE["district_code"]: "某区"}})

    decision = decide(grant, event, NOW, tables)

    assert decision.outcome == "delivered" and decision.reason == ""
    assert decision.view == {
        **event,
        "after": {
            "credit_code": LICENCE["credit_code"],
            "legal_representative_id": "*" * 14 + LICENCE["legal_representative_id"][-4:],
            "big": LICENCE["registered_capital"] >= 1000000,
            "district_name": "某区",
        },
    }


def test_a_failure_never_quotes_the_record() -> None:
    secret = LICENCE["legal_representative_id"]
    for rows in (
        f"duration(after.legal_representative_id) > duration('1s') || after.name == '{secret[:2]}'",
        "after.legal_representative_id + dyn(1) == 2",
        "int(after.legal_representative_id) * 9223372036854775807 > 1",
    ):
        decision = decide(_grant(rows=rows, operations=["CREATE"]), _event(), NOW)
        assert decision.outcome == "failed"
        assert secret not in decision.reason and secret[-6:] not in decision.reason


class _Given:
    def __init__(self, value: Any) -> None:
        self.value = value

    def decode(self, value: bytes | None) -> Any:
        return self.value


def test_the_routing_dead_letters_a_failure_and_audits_every_decision() -> None:
    failing = _grant(rows="size(after.name) / 0 > 1", operations=["CREATE"])
    filtering = compile_grant(
        Grant.model_validate(
            {
                **failing.grant.model_dump(),
                "grant": "other-test",
                "subscriber": "other",
                "rows": "op == 'DELETE'",
            }
        ),
        CATALOG,
    )
    router = Router(
        lambda: PolicySnapshot({DATASET.topic: (failing, filtering)}, {}),
        _Given(_event()),
        ViewEncoders(None),
    )

    key = DATASET.key_of(_event()["after"] or {}).encode()
    routing = router.route(DATASET.topic, 1, 9, key, b"original", NOW)

    assert routing.deliveries == []
    [dead] = routing.dead_letters
    assert (dead.topic, dead.key, dead.value) == (DEAD_LETTER_TOPIC, key, b"original")
    assert dict(dead.headers) == {
        headers.DLQ_REASON: b"grant_failed",
        headers.DLQ_ERROR: b"grant decision-test v1: row filter failed: division by zero",
        headers.SOURCE_TOPIC: DATASET.topic.encode(),
        headers.SOURCE_PARTITION: b"1",
        headers.SOURCE_OFFSET: b"9",
        headers.GRANT_ID: b"decision-test",
    }
    [audit] = routing.audit
    assert [
        (d["grant"], d["decision"], d["reason"])
        for d in json.loads(audit.value or b"")["decisions"]
    ] == [
        ("decision-test", "failed", "row filter failed: division by zero"),
        ("other-test", "filtered", "row filter is false"),
    ]


@pytest.mark.parametrize("decoded", [{"some": "record"}, "text", None])
def test_a_record_that_is_no_change_event_is_a_dead_letter(decoded: Any) -> None:
    router = Router(
        lambda: PolicySnapshot({DATASET.topic: (_grant(),)}, {}),
        _Given(decoded),
        ViewEncoders(None),
    )

    routing = router.route(DATASET.topic, 0, 3, None, b"bytes", NOW)

    [dead] = routing.outputs
    assert dict(dead.headers)[headers.DLQ_REASON] == b"not_a_change_event"
    assert dead.value == b"bytes"


def test_the_decision_depends_on_nothing_but_its_arguments() -> None:
    grant, event = _grant(rows="after.status == 'ACTIVE'", operations=["CREATE"]), _event()
    assert (
        decide(grant, event, NOW)
        == decide(grant, event, NOW)
        == Decision(
            "delivered",
            "",
            {**event, "after": {"credit_code": LICENCE["credit_code"], "status": "ACTIVE"}},
            LICENCE["credit_code"].encode(),
            True,
        )
    )
