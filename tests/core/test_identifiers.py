import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xbus.core.identifiers import (
    credit_code,
    credit_code_check,
    is_valid_credit_code,
    is_valid_resident_id,
    resident_id,
    resident_id_check,
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


# The checks as GB 11643 and GB 32100 define them, character by character: the shortcuts the
# module takes must agree with them on any text at all.
def _resident_id_by_definition(number: str) -> bool:
    return (
        len(number) == 18
        and number[:17].isdigit()
        and resident_id_check(number[:17]) == number[17].upper()
    )


def _credit_code_by_definition(code: str) -> bool:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    return (
        len(code) == 18
        and all(c in alphabet for c in code)
        and credit_code_check(code[:17]) == code[17]
    )


def _replaced(text: str, at: int, character: str) -> str:
    return text[:at] + character + text[at + 1 :]


_DIGITS = st.text(st.sampled_from("0123456789"), min_size=17, max_size=17)
_VALID_IDS = _DIGITS.map(lambda body: body + resident_id_check(body))
_CODE_CHARACTERS = st.sampled_from("0123456789ABCDEFGHJKLMNPQRTUWXY")
_VALID_CODES = st.text(_CODE_CHARACTERS, min_size=17, max_size=17).map(
    lambda body: body + credit_code_check(body)
)
# Digits of other scripts (which isdigit() takes), characters like the alphabet's, a surrogate.
_ODD = st.sampled_from(["٣", "５", "²", "x", "X", "O", "I", "Z", " ", "é", "\ud800"])


@settings(max_examples=3000)
@given(
    st.one_of(
        st.text(max_size=20),
        _VALID_IDS,
        _VALID_IDS.map(str.lower),
        st.builds(_replaced, _VALID_IDS, st.integers(0, 17), _ODD),
    )
)
def test_resident_id_check_agrees_with_its_definition(number: str) -> None:
    try:
        expected = _resident_id_by_definition(number)
    except ValueError:  # a digit isdigit() takes and int() does not ('²')
        with pytest.raises(ValueError):
            is_valid_resident_id(number)
    else:
        assert is_valid_resident_id(number) is expected


@settings(max_examples=3000)
@given(
    st.one_of(
        st.text(max_size=20),
        st.text(_CODE_CHARACTERS, min_size=18, max_size=18),
        _VALID_CODES,
        st.builds(_replaced, _VALID_CODES, st.integers(0, 17), _ODD),
    )
)
def test_credit_code_check_agrees_with_its_definition(code: str) -> None:
    assert is_valid_credit_code(code) is _credit_code_by_definition(code)
