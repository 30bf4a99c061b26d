"""Grant files: every mistake found before use, with its line; what a valid grant lets out."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from tests.support.grant_helpers import HEADER, compile_grant, grant_problems, load_grant
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event
from xbus.producers.demodata import DemoData
from xbus.streams.decision import decide
from xbus.streams.explanation import explain
from xbus.streams.grant_files import load_grants
from xbus.streams.masks import District, Hash, Pseudonym, Round, ShowFirst, ShowLast, Year

CATALOG = Catalog.load(ROOT / "schemas")
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def _problems(tmp_path: Path, body: str, header: str = HEADER) -> list[str]:
    return grant_problems(tmp_path, body, CATALOG, header)


def test_the_demo_grants_are_valid() -> None:
    loaded, problems = load_grants([ROOT / "grants"], CATALOG)
    assert problems == []
    assert len(loaded) == len(list((ROOT / "grants").glob("*/*.yaml")))


def test_unknown_field_mask_and_misfit_masks_are_reported_by_line(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        fields:
          credit_code: {}
          capital: {}
          name: {mask: {type: scramble}}
          established_on: {mask: {type: show_last, n: 2}}
          registered_capital: {mask: {type: year}}
        """,
    )
    assert problems == [
        "11: fields.name.mask: unknown mask type 'scramble'; known: redact, show_first, "
        "show_last, hash, pseudonym, nullify, year, round, district",
    ]
    problems = _problems(
        tmp_path,
        """\
        fields:
          credit_code: {}
          capital: {}
          established_on: {mask: {type: show_last, n: 2}}
          registered_capital: {mask: {type: year}}
        """,
    )
    assert problems[0].startswith(
        "10: fields.capital: no such field in market_regulation.business_licence"
    )
    assert sorted(problems[1:]) == [
        "11: fields.established_on: mask show_last does not apply to a date field",
        "12: fields.registered_capital: mask year does not apply to a decimal field",
    ]


def test_a_cel_expression_that_does_not_compile_says_where(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        rows: "after.status == "
        fields:
          credit_code: {}
        derive:
          band: {cel: "record.x + ", type: string}
          flag: {cel: "secret.value"}
        """,
    )
    assert problems[0].startswith("8: rows: CEL does not compile at line 1, column 17:")
    assert problems[1].startswith("12: derive.band: CEL does not compile at line 1, column 12:")
    assert problems[2] == (
        "13: derive.flag: unknown variable 'secret'; an expression here may use now, op, "
        "record (at column 1)"
    )


def test_sharing_rules_and_unmasked_personal_fields(tmp_path: Path) -> None:
    no_approval = HEADER.replace("approval: T-1\n", "")
    assert _problems(tmp_path, "fields:\n  credit_code: {}\n", no_approval) == [
        "3: approval: market_regulation.business_licence is shared only under an approved "
        "grant; name the approval"
    ]
    never = HEADER.replace(
        "market_regulation.business_licence", "civil_affairs.adoption_registration"
    )
    assert _problems(tmp_path, "fields:\n  registration_no: {}\n", never) == [
        "3: dataset: civil_affairs.adoption_registration has sharing class 'none': it never "
        "leaves its department"
    ]
    problems = _problems(
        tmp_path,
        """\
        fields:
          credit_code: {}
          legal_representative_id: {}
          contact_phone: {approved_unmasked: T-1}
        """,
    )
    assert problems == [
        "10: fields.legal_representative_id: legal_representative_id is sensitive and would "
        "leave unmasked; mask it, or name the approval that allows it with approved_unmasked"
    ]


def test_a_nested_record_granted_whole_checks_its_nested_fields(tmp_path: Path) -> None:
    header = HEADER.replace("market_regulation.business_licence", "health.vaccination_record")
    problems = _problems(tmp_path, "fields:\n  person: {}\n", header)
    assert [p.split(":")[1].strip() for p in problems] == ["fields.person"] * 4
    assert "person.id_number is sensitive" in " ".join(problems)


def test_two_grants_of_one_subscriber_on_one_dataset_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            HEADER.replace("test-grant", f"grant-{name}") + "fields:\n  credit_code: {}\n"
        )
    _, problems = load_grants([tmp_path], CATALOG)
    assert len(problems) == 1
    assert "tester already has grant grant-a on market_regulation.business_licence" in str(
        problems[0]
    )


def test_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "k" * 32)
    assert ShowLast(type="show_last", n=4).function()("310115199001011234") == "*" * 14 + "1234"
    assert ShowFirst(type="show_first", n=1).function()("张三丰") == "张**"
    cut = District(type="district").function()
    assert cut("上海市浦东新区张杨路500号") == "上海市浦东新区"
    assert cut("310115") == "310100"
    assert Year(type="year").function()(dt.date(1990, 5, 17)) == 1990
    assert Round(type="round", step=decimal.Decimal(1000)).function()(
        decimal.Decimal("12345.67")
    ) == decimal.Decimal("12000.00")
    hashed = Hash(type="hash").function()("a")  # keyed: see tests/streams/test_keys.py
    assert hashed.startswith("v1:") and "ca978112ca1bbdcafac231b39a23dc4d" not in hashed


def test_pseudonyms_are_keyed_and_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "k" * 32)
    first = Pseudonym(type="pseudonym").function()("310115199001011234")
    again = Pseudonym(type="pseudonym").function()("310115199001011234")
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "j" * 32)
    other_key = Pseudonym(type="pseudonym").function()("310115199001011234")
    assert first == again != other_key
    assert "310115" not in first


def test_explain_says_what_the_subscriber_receives_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    grant = compile_grant(
        load_grant(ROOT / "grants/one_stop_centre/business_licence.yaml"), CATALOG
    )
    licence = {**DemoData(seed=5).business_licence(), "district_code": "310115"}
    event = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=Op.CREATE,
        after=licence,
        system="t",
    )
    answer = explain(grant, event, NOW, None)
    assert answer.decision.outcome == "delivered"
    assert answer.fields["legal_representative_id"] == "masked: show_last"
    assert answer.fields["registered_capital"] == "withheld: not granted"
    assert answer.decision.view is not None and answer.decision.view["after"] is not None
    assert answer.decision.view["after"]["legal_representative_id"].endswith(
        licence["legal_representative_id"][-4:]
    )
    elsewhere = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=Op.CREATE,
        after={**licence, "district_code": "310104"},
        system="t",
    )
    assert explain(grant, elsewhere, NOW, None).decision[:3] == (
        "filtered",
        "row filter is false",
        None,
    )
    later = dt.datetime(2028, 6, 1, tzinfo=dt.UTC)
    assert explain(grant, event, later, None).decision.outcome == "expired"


def test_a_nested_field_of_a_record_type_used_again_can_be_granted_alone() -> None:
    """Marriage registrations name the Party record twice (party_a, party_b): a grant selects
    party_b's fields as it selects party_a's, and what it leaves out is not sent."""
    grant = compile_grant(
        load_grant(ROOT / "grants/public_security/marriage_registration.yaml"), CATALOG
    )
    record = {
        "registration_no": "J310101-2026-000001",
        "kind": "MARRIAGE",
        "party_a": {
            "name": "王伟",
            "id_number": "310101199001011234",
            "birth_date": dt.date(1990, 1, 1),
            "household_district_code": "310101",
        },
        "party_b": {
            "name": "李娜",
            "id_number": "310104199202022345",
            "birth_date": dt.date(1992, 2, 2),
            "household_district_code": None,
        },
        "registered_on": dt.date(2026, 11, 30),
        "office_code": "MZ310101",
        "district_code": "310101",
    }
    event = change_event(
        department="civil_affairs",
        dataset="marriage_registration",
        op=Op.CREATE,
        after=record,
        system="test",
    )
    decision = decide(grant, event, NOW)
    assert decision.outcome == "delivered"
    assert decision.view is not None
    assert decision.view["after"]["party_b"] == {
        "name": "李娜",
        "id_number": "310104199202022345",
        "household_district_code": None,
    }
    assert "birth_date" not in decision.view["after"]["party_a"]
    assert (
        CATALOG.get("civil_affairs", "marriage_registration").classifications["party_b.id_number"]
        == "sensitive"
    )
