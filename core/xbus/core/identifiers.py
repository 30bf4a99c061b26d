"""Chinese identifiers with their check characters: resident identity numbers
(GB 11643) and unified social credit codes (GB 32100, with the GB 11714 organisation code
inside)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from operator import mul

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


_VALUE = {c: i for i, c in enumerate(_USCC_CHARS)}

# Publishers check every identifier of every record, so the validity checks below work on
# bytes, which is twice as fast as a character at a time: an ASCII digit's byte is its value
# plus that of "0" (taken off the weighted sum once), and ``bytes.translate`` gives each
# character of a credit code its value.
_ID_ZEROS = ord("0") * sum(_ID_WEIGHTS)
_USCC_ALPHABET = frozenset(_USCC_CHARS)
_USCC_VALUES = bytes(_VALUE.get(chr(b), 0) for b in range(256))


def resident_id_check(first17: str) -> str:
    """The check character of an 18-digit resident identity number."""
    return _id_check(sum(map(mul, map(int, first17), _ID_WEIGHTS)))


def _id_check(weighted_sum: int) -> str:
    return _ID_CHECK[weighted_sum % 11]


def _division(region: str) -> str:
    if len(region) != 6 or not region.isdigit():
        raise ValueError(
            f"{region!r} is not an administrative division code (six digits, e.g. 310115)"
        )
    return region


def resident_id(region: str, birth: dt.date, sequence: int) -> str:
    """A resident identity number for a person born on ``birth`` and registered in
    ``region``, a six-digit administrative division code (310115: Pudong, Shanghai)."""
    body = f"{_division(region)}{birth:%Y%m%d}{sequence % 1000:03d}"
    return body + resident_id_check(body)


def is_valid_resident_id(number: str) -> bool:
    """Whether ``number`` is 18 characters with a correct check character."""
    if len(number) != 18:
        return False
    body = number[:17]
    if not body.isdigit():
        return False
    if body.isascii():
        check = _id_check(sum(map(mul, body.encode(), _ID_WEIGHTS)) - _ID_ZEROS)
    else:  # digits of other scripts, which isdigit() takes too and int() reads
        check = resident_id_check(body)
    return check == number[17].upper()


def organisation_code_check(first8: str) -> str:
    """The check character of a GB 11714 organisation code."""
    total = sum(map(mul, map(_VALUE.__getitem__, first8), _ORG_WEIGHTS))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_code_check(first17: str) -> str:
    """The check character of an 18-character unified social credit code."""
    return _credit_check(sum(map(mul, map(_VALUE.__getitem__, first17), _USCC_WEIGHTS)))


def _credit_check(weighted_sum: int) -> str:
    return _USCC_CHARS[(31 - weighted_sum % 31) % 31]


def credit_code(region: str, serial: int, *, authority: str = "9", kind: str = "1") -> str:
    """A unified social credit code of an enterprise (authority 9 = market regulation,
    kind 1 = enterprise) registered in ``region``, a six-digit administrative division code."""
    org8 = f"{serial % 10**8:08d}"
    body = f"{authority}{kind}{_division(region)}{org8}{organisation_code_check(org8)}"
    return body + credit_code_check(body)


def is_valid_credit_code(code: str) -> bool:
    """Whether ``code`` is 18 characters from the code's alphabet with a correct check character."""
    if len(code) != 18 or not _USCC_ALPHABET.issuperset(code):
        return False
    values = code.encode().translate(_USCC_VALUES)  # ASCII: every character is in the alphabet
    return _credit_check(sum(map(mul, values, _USCC_WEIGHTS))) == code[17]


# The values of a field's ``xbus.format``: how a string field is checked beyond its type.
FORMATS: dict[str, tuple[Callable[[str], bool], str]] = {
    "resident_id": (
        is_valid_resident_id,
        "not a resident identity number (18 characters with a correct check character)",
    ),
    "credit_code": (
        is_valid_credit_code,
        "not a unified social credit code (18 characters with a correct check character)",
    ),
}
