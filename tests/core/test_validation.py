import datetime as dt
import decimal

import pytest

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData
from xbus.producers.jsonevents import loads, spec_from_json

CATALOG = Catalog.load(ROOT / "schemas")


def _validator(name: str) -> RecordValidator:
    return RecordValidator(CATALOG.find(name).schema)


def _errors(name: str, record: object) -> dict[str, str]:
    _, errors = _validator(name).conform(record, "after")
    return {e.path: e.message for e in errors}


def test_every_bad_field_is_reported_by_its_path() -> None:
    licence = DemoData(seed=1).business_licence()
    licence.update(
        registered_capital="12.345",
        established_on="2026-13-01",
        status="OPEN",
        issued_at="2026-01-01T08:00:00",
        founded_by="nobody",
    )
    del licence["name"]

    errors = _errors("business_licence", licence)

    assert errors == {
        "after.name": "required field is missing",
        "after.registered_capital": "12.345 has 3 decimal places; at most 2",
        "after.established_on": "expected a date as YYYY-MM-DD, got str '2026-13-01'",
        "after.status": "expected one of ACTIVE, SUSPENDED, REVOKED, DEREGISTERED, got str 'OPEN'",
        "after.issued_at": "the date and time needs a UTC offset, e.g. +08:00",
        "after.founded_by": "unknown field: the dataset has no such field",
    }


def test_nested_fields_and_identifier_check_digits() -> None:
    record = DemoData(seed=2).vaccination_record()
    record["person"]["id_number"] = record["person"]["id_number"][:17] + (
        "0" if record["person"]["id_number"][17] != "0" else "1"
    )
    record["person"]["sex"] = 1
    assert _errors("vaccination_record", record) == {
        "after.person.id_number": "not a resident identity number (18 characters with a "
        "correct check character)",
        "after.person.sex": "expected one of FEMALE, MALE, UNKNOWN, got int 1",
    }


def test_json_values_become_avro_values() -> None:
    licence = DemoData(seed=3).business_licence()
    as_json = loads(
        '{"registered_capital": 1000000.50, "established_on": "2026-11-02",'
        ' "issued_at": "2026-11-02T09:30:00+08:00"}'
    )
    record, errors = _validator("business_licence").conform({**licence, **as_json}, "after")
    assert errors == []
    assert record["registered_capital"] == decimal.Decimal("1000000.50")
    assert record["established_on"] == dt.date(2026, 11, 2)
    assert record["issued_at"] == dt.datetime(2026, 11, 2, 1, 30, tzinfo=dt.UTC)


def test_a_float_is_refused_for_a_decimal_and_an_optional_field_may_be_left_out() -> None:
    licence = DemoData(seed=4).business_licence()
    del licence["contact_phone"]
    licence["registered_capital"] = 0.1
    errors = _errors("business_licence", licence)
    assert list(errors) == ["after.registered_capital"]
    assert "not a float" in errors["after.registered_capital"]


@pytest.mark.parametrize("name", [d.qualified_name for d in CATALOG])
def test_generated_records_of_every_dataset_are_valid(name: str) -> None:
    data = DemoData(seed=9)
    for _ in range(20):
        assert _errors(name, data.record(CATALOG.find(name))) == {}


def test_envelope_fields_of_a_json_event_are_checked() -> None:
    spec, errors = spec_from_json({"op": "UPSERT", "after": [], "ts_ms": "yesterday", "x": 1})
    assert spec is None
    assert {e.path for e in errors} == {"op", "after", "ts_ms", "x"}
    spec, errors = spec_from_json(
        {"op": "DELETE", "before": {"id": 1}, "ts_ms": "2026-11-30T08:00:00+08:00"}
    )
    assert errors == [] and spec is not None
    assert spec.ts_ms == int(dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize("capital", ["1e30", 10**30, "1e999999999", decimal.Decimal("-1E+40")])
def test_a_decimal_too_large_for_its_precision_is_a_field_error_not_an_exception(
    capital: object,
) -> None:
    licence = {**DemoData(seed=3).business_licence(), "registered_capital": capital}

    errors = _errors("business_licence", licence)

    assert list(errors) == ["after.registered_capital"]
    assert "has more than 18 digits" in errors["after.registered_capital"]
