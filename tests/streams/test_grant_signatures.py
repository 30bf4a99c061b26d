"""Signed grants, without a broker: the canonical bytes a signature covers, and how each kind
of grants-topic record is judged (the very function the engine and ``xbus grants list`` use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.checkout import ROOT
from tests.support.grant_helpers import licence_grant
from xbus.core.catalog import Catalog
from xbus.core.errors import ConfigurationError
from xbus.core.settings import BusSettings
from xbus.core.signatures import load_public_keys, sign, verifies
from xbus.streams.policy import CompiledGrant
from xbus.streams.policy_records import Refusal, grant_key, grant_value, signed_bytes
from xbus.streams.state import PolicyState, judge_grant

OFFICE = Ed25519PrivateKey.generate()
CONTENT = {"grant": "g-1", "subscriber": "tax", "fields": {"a": {}, "b": {"mask": {"n": 4}}}}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "schemas")


def test_canonical_form_ignores_key_order_and_whitespace() -> None:
    reordered = json.loads(
        '{ "fields" : {"b": {"mask": {"n": 4}}, "a": {}},\n "subscriber": "tax", "grant": "g-1"}'
    )
    assert signed_bytes("g-1", 3, reordered) == signed_bytes("g-1", 3, CONTENT)


@pytest.mark.parametrize(
    ("grant_id", "version", "content"),
    [
        ("g-2", 3, CONTENT),
        ("g-1", 4, CONTENT),
        ("g-1", 3, {**CONTENT, "subscriber": "taxes"}),
        ("g-1", 3, {**CONTENT, "fields": {"a": {}, "b": {"mask": {"n": 5}}}}),
        ("g-1", 3, {**CONTENT, "rows": "true"}),
    ],
)
def test_any_change_of_id_version_or_content_breaks_the_signature(
    grant_id: str, version: int, content: dict[str, object]
) -> None:
    grant = licence_grant("g-1", "tax")
    value = json.loads(grant_value(grant, 3, OFFICE))
    signed = signed_bytes("g-1", 3, value["grant"])
    assert verifies(OFFICE.public_key(), signed, value["signature"])
    changed = signed_bytes(grant_id, version, content)
    assert not verifies(OFFICE.public_key(), changed, value["signature"])


def _judge(key: str, value: bytes, catalog: Catalog) -> CompiledGrant | Refusal:
    return judge_grant(grant_key(key), value, [OFFICE.public_key()], catalog)


def test_a_grant_the_office_signed_is_in_force(catalog: Catalog) -> None:
    grant = licence_grant("tax-licence", "tax")
    judged = _judge("tax-licence", grant_value(grant, 2, OFFICE), catalog)
    assert isinstance(judged, CompiledGrant)
    assert (judged.grant, judged.version) == (grant, 2)


def test_a_stored_grant_whose_json_is_laid_out_anew_still_verifies(catalog: Catalog) -> None:
    stored = json.loads(grant_value(licence_grant("tax-licence", "tax"), 1, OFFICE))
    relaid = json.dumps(dict(reversed(stored.items())), indent=4).encode()
    assert isinstance(_judge("tax-licence", relaid, catalog), CompiledGrant)


def _value_with(grant: dict[str, object], version: int, signature: str | None) -> bytes:
    record: dict[str, object] = {"grant": grant, "version": version}
    if signature is not None:
        record["signature"] = signature
    return json.dumps(record).encode()


def test_each_kind_of_bad_record_is_refused_with_its_reason(catalog: Catalog) -> None:
    good = json.loads(grant_value(licence_grant("tax-licence", "tax"), 1, OFFICE))
    content, signature = good["grant"], good["signature"]
    wider = {**content, "fields": {**content["fields"], "name": {}}}
    stranger = Ed25519PrivateKey.generate()
    cases = {
        "unsigned": ("tax-licence", _value_with(content, 1, None)),
        "bad_signature": (
            "tax-licence",
            grant_value(licence_grant("tax-licence", "tax"), 1, stranger),
        ),
    }
    # The office's own signature, moved to another id or version, or kept on a widened grant.
    for key, value in [
        ("other-licence", _value_with(content, 1, signature)),
        ("tax-licence", _value_with(content, 2, signature)),
        ("tax-licence", _value_with(wider, 1, signature)),
        ("tax-licence", _value_with(content, 1, "not base64 at all!")),
    ]:
        judged = _judge(key, value, catalog)
        assert isinstance(judged, Refusal) and judged.reason == "bad_signature", (key, judged)
    unmasked = licence_grant(
        "tax-licence", "tax", "  credit_code: {}\n  legal_representative_id: {}\n"
    )
    cases["invalid"] = ("tax-licence", grant_value(unmasked, 1, OFFICE))
    cases["unreadable"] = ("tax-licence", b"\x00\x01 not json")
    for reason, (key, value) in cases.items():
        judged = _judge(key, value, catalog)
        assert isinstance(judged, Refusal), reason
        assert judged.reason == reason, (reason, judged)
    invalid = _judge(*cases["invalid"], catalog)
    assert isinstance(invalid, Refusal) and "legal_representative_id" in invalid.detail


def test_a_signed_grant_under_another_id_than_its_own_is_invalid(catalog: Catalog) -> None:
    grant = licence_grant("tax-licence", "tax")
    content = grant.model_dump(mode="json", exclude_defaults=True)
    value = _value_with(content, 1, sign(OFFICE, signed_bytes("hijacked", 1, content)))
    judged = _judge("hijacked", value, catalog)
    assert isinstance(judged, Refusal) and judged.reason == "invalid"
    assert "tax-licence" in judged.detail


def test_a_form_error_is_told_without_the_values_it_holds(catalog: Catalog) -> None:
    content = {"grant": "tax-licence", "subscriber": "tax", "purpose": "SECRET-PURPOSE-42"}
    value = _value_with(content, 1, sign(OFFICE, signed_bytes("tax-licence", 1, content)))
    judged = _judge("tax-licence", value, catalog)
    assert isinstance(judged, Refusal) and judged.reason == "invalid"
    assert "fields" in judged.detail and "SECRET-PURPOSE-42" not in judged.detail


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_during_a_rotation_the_engine_accepts_the_old_and_the_new_key(
    tmp_path: Path, catalog: Catalog
) -> None:
    new = Ed25519PrivateKey.generate()
    both = tmp_path / "office.pub"
    both.write_bytes(_pem(OFFICE) + _pem(new))
    keys = load_public_keys(both)
    for signer in (OFFICE, new):
        value = grant_value(licence_grant("tax-licence", "tax"), 1, signer)
        assert isinstance(judge_grant(b"tax-licence", value, keys, catalog), CompiledGrant)


def test_a_verifying_key_file_without_a_public_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "office.pub"
    path.write_text("-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigurationError, match="key 1 is not a PEM public key"):
        load_public_keys(path)
    path.write_text("")
    with pytest.raises(ConfigurationError, match="holds no public key"):
        load_public_keys(path)


def test_an_engine_without_the_office_public_key_refuses_to_start(catalog: Catalog) -> None:
    settings = BusSettings(bootstrap_servers="127.0.0.1:1", grant_verify_key_file=None)
    with pytest.raises(ConfigurationError, match="XBUS_GRANT_VERIFY_KEY_FILE"):
        PolicyState(settings, catalog)
