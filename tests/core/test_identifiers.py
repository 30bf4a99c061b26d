import datetime as dt

import pytest

from xbus.core.identifiers import (
    credit_code,
    is_valid_credit_code,
    is_valid_resident_id,
    resident_id,
)
from xbus.producers.demodata import DISTRICTS, DemoData


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L"])
def test_published_credit_codes_validate(code: str) -> None:
    assert is_valid_credit_code(code)


def test_a_changed_character_breaks_the_credit_code() -> None:
    code = credit_code("310115", 12345678)
    assert is_valid_credit_code(code)
    wrong = code[:10] + ("1" if code[10] != "1" else "2") + code[11:]
    assert not is_valid_credit_code(wrong)


def test_resident_ids_carry_birth_date_and_check_digit() -> None:
    number = resident_id("310115", dt.date(1990, 5, 17), 42)
    assert number.startswith("31011519900517042")
    assert is_valid_resident_id(number)
    assert is_valid_resident_id("11010519491231002X")
    assert not is_valid_resident_id("110105194912310021")


def test_demo_licences_are_repeatable_and_valid() -> None:
    first, again = DemoData(seed=3).business_licence(), DemoData(seed=3).business_licence()
    assert first["credit_code"] == again["credit_code"]
    assert first["name"] == again["name"]
    assert is_valid_credit_code(first["credit_code"])
    assert is_valid_resident_id(first["legal_representative_id"])
    assert first["district_code"] in DISTRICTS
    assert DISTRICTS[first["district_code"]] in first["address"]


def test_demo_enterprises_are_of_shanghai_districts() -> None:
    data = DemoData(seed=8)
    licences = [data.business_licence() for _ in range(200)]
    assert {licence["district_code"] for licence in licences} == set(DISTRICTS)
    for licence in licences:
        code = licence["district_code"]
        assert licence["address"].startswith(f"上海市{DISTRICTS[code]}")
        assert licence["credit_code"][2:8] == code
        assert licence["legal_representative_id"][:6] == code
        assert licence["name"].startswith("上海")


def test_a_region_that_is_not_a_division_code_is_refused() -> None:
    with pytest.raises(ValueError, match="not an administrative division code"):
        resident_id("3101", dt.date(1990, 5, 17), 1)
    with pytest.raises(ValueError, match="not an administrative division code"):
        credit_code("上海市", 1)
