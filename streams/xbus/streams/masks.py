"""Masks: how a field a subscriber may see is transformed before it leaves, in the style of
Apache Ranger. Each mask says which Avro types it applies to, what type its result has, and
transforms one value; ``None`` stays ``None`` (there is nothing to hide)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xbus.core.settings import BusSettings

# How a field's Avro type is told apart, ignoring null in an optional field.
STRING, INT, LONG, FLOAT, DOUBLE, DECIMAL, DATE, TIMESTAMP = (
    "string",
    "int",
    "long",
    "float",
    "double",
    "decimal",
    "date",
    "timestamp",
)
NUMBERS = (INT, LONG, FLOAT, DOUBLE, DECIMAL)


class _Mask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def accepts(self) -> tuple[str, ...]:
        """The kinds of field this mask applies to."""
        return (STRING,)

    def result_type(self, field_type: Any) -> Any:
        """The Avro type of the masked value (before making it nullable)."""
        return "string"

    def function(self) -> Callable[[Any], Any]:
        """The transformation of one non-null value."""
        raise NotImplementedError


class Redact(_Mask):
    """Replace the value with a fixed text."""

    type: Literal["redact"]
    text: str = "***"

    def accepts(self) -> tuple[str, ...]:
        return (STRING, *NUMBERS, DATE, TIMESTAMP, "other")

    def function(self) -> Callable[[Any], Any]:
        text = self.text
        return lambda _: text


class ShowFirst(_Mask):
    """Keep the first ``n`` characters, replace the rest with ``*``; at least one character
    is always hidden, so no value shorter than ``n`` + 1 leaves whole."""

    type: Literal["show_first"]
    n: int = Field(ge=0)

    def function(self) -> Callable[[Any], Any]:
        n = self.n

        def show_first(v: str) -> str:
            keep = max(0, min(n, len(v) - 1))
            return v[:keep] + "*" * (len(v) - keep)

        return show_first


class ShowLast(_Mask):
    """Keep the last ``n`` characters, replace the rest with ``*``; at least one character
    is always hidden, so no value shorter than ``n`` + 1 leaves whole."""

    type: Literal["show_last"]
    n: int = Field(ge=0)

    def function(self) -> Callable[[Any], Any]:
        n = self.n

        def show_last(v: str) -> str:
            keep = max(0, min(n, len(v) - 1))
            return "*" * (len(v) - keep) + (v[len(v) - keep :] if keep else "")

        return show_last


class Hash(_Mask):
    """A keyed hash: HMAC-SHA256 of the value with a key derived from the office secret,
    written ``v1:<key id>:<64 hex>``. Equal values stay equal under one secret; without the
    secret nobody can recompute it, so enumerating the candidates of a small space (every
    resident ID number of a district and a birth year) finds nothing. ``v1`` is the scheme,
    the key id names the secret (a new secret, a new id), so values hashed before and after
    a rotation are told apart rather than silently compared."""

    type: Literal["hash"]

    def accepts(self) -> tuple[str, ...]:
        return (STRING, *NUMBERS, DATE, TIMESTAMP)

    def function(self) -> Callable[[Any], Any]:
        # Read on first use, so a grant validates without the secret.
        keyed: list[tuple[hmac.HMAC, str]] = []

        def keyed_hash(v: Any) -> str:
            if not keyed:
                secret = pseudonym_key()
                keyed.append(
                    (keyed_digest(secret, HASH_DOMAIN), f"{HASH_VERSION}:{key_id(secret)}:")
                )
            digest, prefix = keyed[0]
            mac = digest.copy()
            mac.update(_text(v).encode())
            return prefix + mac.hexdigest()

        return keyed_hash


class Pseudonym(_Mask):
    """A keyed pseudonym (HMAC-SHA256 with the bus's secret): stable across restarts and
    subscribers of one bus, and not reversible or recomputable without the secret."""

    type: Literal["pseudonym"]

    def accepts(self) -> tuple[str, ...]:
        return (STRING, INT, LONG, DECIMAL)

    def function(self) -> Callable[[Any], Any]:
        # Keyed on first use (so a grant validates without the secret), then copied per
        # value like the hash's, instead of keying a new HMAC for each one.
        keyed: list[hmac.HMAC] = []

        def pseudonym(v: Any) -> str:
            if not keyed:
                keyed.append(hmac.new(pseudonym_key(), digestmod=hashlib.sha256))
            mac = keyed[0].copy()
            mac.update(_text(v).encode())
            return mac.hexdigest()[:32]

        return pseudonym


class Nullify(_Mask):
    """Send null in place of the value."""

    type: Literal["nullify"]

    def accepts(self) -> tuple[str, ...]:
        return (STRING, *NUMBERS, DATE, TIMESTAMP, "other")

    def result_type(self, field_type: Any) -> Any:
        return "null"

    def function(self) -> Callable[[Any], Any]:
        return lambda _: None


class Year(_Mask):
    """Only the year of a date or a date and time."""

    type: Literal["year"]

    def accepts(self) -> tuple[str, ...]:
        return (DATE, TIMESTAMP)

    def result_type(self, field_type: Any) -> Any:
        return "int"

    def function(self) -> Callable[[Any], Any]:
        return lambda v: v.year


class Round(_Mask):
    """Round a number down to a multiple of ``step`` (a salary to the thousand, say)."""

    type: Literal["round"]
    step: decimal.Decimal = Field(gt=0)

    def accepts(self) -> tuple[str, ...]:
        return NUMBERS

    def result_type(self, field_type: Any) -> Any:
        return field_type

    def function(self) -> Callable[[Any], Any]:
        step = self.step

        def round_down(v: Any) -> Any:
            if isinstance(v, decimal.Decimal):
                exponent = v.as_tuple().exponent
                return ((v // step) * step).quantize(
                    decimal.Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
                )
            if isinstance(v, int):
                return int((v // step) * step)
            return float((decimal.Decimal(str(v)) // step) * step)

        return round_down


_DISTRICT = re.compile(r"^(.*?(?:省|自治区))?(.*?(?:市|自治州|地区|盟))?(.*?(?:区|县|旗|市))")


class District(_Mask):
    """Cut an address to its district (``上海市浦东新区张杨路500号`` becomes
    ``上海市浦东新区``), or a six-digit division code to its city (``310115`` becomes
    ``310100``)."""

    type: Literal["district"]

    def function(self) -> Callable[[Any], Any]:
        def cut(v: str) -> str:
            if len(v) == 6 and v.isdigit():
                return v[:4] + "00"
            found = _DISTRICT.match(v)
            return found.group(0) if found else "***"

        return cut


Mask = Annotated[
    Redact | ShowFirst | ShowLast | Hash | Pseudonym | Nullify | Year | Round | District,
    Field(discriminator="type"),
]
MASK_TYPES = (
    "redact",
    "show_first",
    "show_last",
    "hash",
    "pseudonym",
    "nullify",
    "year",
    "round",
    "district",
)


def _text(value: Any) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


# The keyed hash's scheme, and the labels that derive one key per use from the office secret:
# a hash, a record key and a key id of one value never coincide.
HASH_VERSION = "v1"
HASH_DOMAIN = b"xbus/hash/v1"
RECORD_KEY_DOMAIN = b"xbus/record-key/v1"
_KEY_ID_DOMAIN = b"xbus/key-id/v1"


def keyed_digest(secret: bytes, domain: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 ready to take a value, keyed with the key ``secret`` derives for
    ``domain`` (HMAC-SHA256 of the domain); copy it for each value."""
    return hmac.new(hmac.new(secret, domain, hashlib.sha256).digest(), digestmod=hashlib.sha256)


def key_id(secret: bytes) -> str:
    """Eight hex characters that name ``secret`` without telling anything of it."""
    return hmac.new(secret, _KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:8]


def pseudonym_key() -> bytes:
    """The secret of keyed pseudonyms, read from the settings now (grants are compiled
    rarely; a test or a rotation sees the current value)."""
    return BusSettings().pseudonym_secret()


def kind_of(field_type: Any) -> str:
    """Which mask kind a field's Avro type is (optional fields by their non-null branch)."""
    if isinstance(field_type, list):
        branches = [b for b in field_type if b != "null"]
        return kind_of(branches[0]) if len(branches) == 1 else "other"
    if isinstance(field_type, dict):
        logical = field_type.get("logicalType")
        if logical == "decimal":
            return DECIMAL
        if logical == "date":
            return DATE
        if logical in ("timestamp-millis", "timestamp-micros"):
            return TIMESTAMP
        inner = field_type.get("type")
        return inner if inner in (STRING, INT, LONG, FLOAT, DOUBLE) else "other"
    return field_type if field_type in (STRING, INT, LONG, FLOAT, DOUBLE) else "other"


def base_type(field_type: Any) -> Any:
    """An optional field's non-null type; any other type as it is."""
    if isinstance(field_type, list):
        branches = [b for b in field_type if b != "null"]
        return branches[0] if len(branches) == 1 else field_type
    return field_type
