"""What the policy topics hold, record by record: the codec of the office's signed grants and
of the reference tables' entries, apart from any Kafka client.

``_xbus.grants`` (compacted): key = the grant's id, value = ``{"grant": {...}, "version": n,
"signature": "..."}`` (JSON, the grant without its defaults); the signature is the office's
Ed25519 signature over ``signed_bytes(id, version, grant)``, so it binds the record key, the
version and the whole grant. A tombstone revokes a grant (it carries no signature: whoever
may write the topic can revoke, which denies service but never shows anything).
``_xbus.reference.<table>`` (compacted): key = a code, value = the JSON string it maps to; a
tombstone removes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from xbus.core.errors import SerializationError
from xbus.core.signatures import sign, verifies
from xbus.streams.grants import Grant

# Names what is signed, so that a grant's signature can never pass for another message's.
_SIGNED_LABEL = b"xbus/grant/v1\n"

RefusalReason = Literal["unsigned", "bad_signature", "invalid", "unreadable"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = ("unsigned", "bad_signature", "invalid", "unreadable")


class StoredGrant(NamedTuple):
    """A grant as the grants topic holds it, with its version, its signature checked."""

    grant: Grant
    version: int


@dataclass(frozen=True)
class Refusal:
    """Why a grants-topic record is not enforced: ``reason`` (one of ``REFUSAL_REASONS``),
    ``detail`` for the office (never the record's value), the version it claims if readable,
    and where it is (``topic[partition]@offset``) once known."""

    reason: RefusalReason
    detail: str
    version: int | None = None
    where: str = ""


def grant_key(grant_id: str) -> bytes:
    """The key of a grant's records: its id."""
    return grant_id.encode()


def signed_bytes(grant_id: str, version: int, content: Mapping[str, Any]) -> bytes:
    """The canonical bytes a grant's signature covers: its id (the record key), its version
    and its whole content, as JSON with sorted keys and no whitespace, so that neither the
    order of keys nor the layout of the stored JSON changes them, and any change of id,
    version or content does."""
    body = {"grant": content, "id": grant_id, "version": version}
    return (
        _SIGNED_LABEL
        + json.dumps(
            body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()
    )


def grant_value(grant: Grant, version: int, key: Ed25519PrivateKey) -> bytes:
    """How version ``version`` of ``grant`` is stored, signed with the office's ``key``."""
    content = grant.model_dump(mode="json", exclude_defaults=True)
    signature = sign(key, signed_bytes(grant.grant, version, content))
    return json.dumps(
        {"grant": content, "version": version, "signature": signature}, ensure_ascii=False
    ).encode()


def read_grant_record(
    key: bytes, value: bytes, office_keys: Sequence[Ed25519PublicKey]
) -> StoredGrant | Refusal:
    """The grant a grants-topic record holds if one of ``office_keys`` signed it for this key
    and version, and it is a well-formed grant with the key's id; else why not. Nothing of the
    record is read as a grant before its signature is checked."""
    try:
        grant_id = key.decode()
        stored = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        return Refusal("unreadable", f"not a stored grant: {type(exc).__name__}")
    if (
        not isinstance(stored, dict)
        or not isinstance(stored.get("grant"), dict)
        or type(stored.get("version")) is not int
    ):
        return Refusal("unreadable", 'not a stored grant: {"grant": {...}, "version": n} expected')
    content, version, signature = stored["grant"], stored["version"], stored.get("signature")
    if signature is None:
        return Refusal("unsigned", "the record carries no signature", version)
    try:
        message = signed_bytes(grant_id, version, content)
    except ValueError:  # NaN or infinity: nothing the office signs
        return Refusal("unreadable", "the grant holds a number JSON cannot carry", version)
    if not isinstance(signature, str) or not any(
        verifies(k, message, signature) for k in office_keys
    ):
        return Refusal(
            "bad_signature",
            "the signature is not the office's over this grant id, version and content",
            version,
        )
    try:
        grant = Grant.model_validate(content)
    except ValidationError as exc:
        # The locations and messages only: pydantic would quote the input values.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return Refusal("invalid", f"not a valid grant: {problems}", version)
    if grant.grant != grant_id:
        return Refusal(
            "invalid",
            f"the record's key is {grant_id!r} but it holds grant {grant.grant!r}",
            version,
        )
    return StoredGrant(grant, version)


def claimed_version(value: bytes) -> int:
    """The version a grants-topic value claims, 0 if it claims none (not to be trusted: only
    to number the office's next version above it)."""
    try:
        version = json.loads(value).get("version")
    except (ValueError, AttributeError):
        return 0
    return version if type(version) is int else 0


def entry_value(value: object) -> bytes:
    """How an entry of a reference table is stored: the text it maps to, as JSON."""
    return json.dumps(str(value), ensure_ascii=False).encode()


def decode_entry(value: bytes) -> str:
    """The text a reference-table value maps to; raises ``SerializationError``
    (``unreadable_entry``) if it is not JSON."""
    try:
        return str(json.loads(value))
    except ValueError as exc:
        raise SerializationError("unreadable_entry", f"not a reference entry: {exc}") from exc
