"""Keys and hashes reveal nothing the body may not: a delivered record's key comes from the
view, never from the source; the ``hash`` mask is keyed, so enumerating resident ID numbers
finds nothing; a grant that fails after its row filter held leaves the subscriber a dead
letter with the envelope only, keyed as its delivery would have been."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.grant_helpers import compile_grant
from xbus.core import headers
from xbus.core.catalog import Catalog, Dataset
from xbus.core.envelope import ChangeEvent, Op, change_event
from xbus.core.identifiers import is_valid_resident_id, resident_id
from xbus.core.topics import AUDIT_TOPIC, subscriber_dead_letter_topic
from xbus.streams.decision import decide
from xbus.streams.grants import Grant
from xbus.streams.masks import Hash
from xbus.streams.policy import CompiledGrant
from xbus.streams.routing import Output, Router, ViewEncoders
from xbus.streams.state import PolicySnapshot

NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
# Residents of Pudong born in March 1990: a candidate space of 31 days x 1,000 sequences.
BORN = [dt.date(1990, 3, 1) + dt.timedelta(days=d) for d in range(31)]
RESIDENTS = [
    {
        "id_number": resident_id("310115", BORN[(7 * i) % 31], 100 + 37 * i),
        "district_code": "310115",
        "name": f"居民{i}",
        "household_size": 1 + i % 4,
    }
    for i in range(10)
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A dataset whose business key is a resident ID number, classified sensitive."""
    schemas = tmp_path_factory.mktemp("schemas")
    (schemas / "public_security").mkdir()
    (schemas / "public_security" / "resident.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Resident",
                "namespace": "gov.public_security",
                "xbus.department": "public_security",
                "xbus.business_key": ["id_number"],
                "xbus.sharing": "conditional",
                "fields": [
                    {"name": "id_number", "type": "string", "classification": "sensitive"},
                    {"name": "district_code", "type": "string", "classification": "public"},
                    {"name": "name", "type": "string", "classification": "personal"},
                    {"name": "household_size", "type": "int", "classification": "public"},
                ],
            }
        )
    )
    return Catalog.load(Path(schemas)).get("public_security", "resident")


def _grant(dataset: Dataset, subscriber: str = "statistics", **changes: Any) -> CompiledGrant:
    catalog = Catalog([dataset], dataset.envelope)
    return compile_grant(
        Grant.model_validate(
            {
                "grant": f"{subscriber.replace('_', '-')}-residents",
                "subscriber": subscriber,
                "dataset": dataset.qualified_name,
                "purpose": "p",
                "legal_basis": "l",
                "approval": "A-1",
                "valid_from": "2026-01-01T00:00:00+00:00",
                "fields": {"district_code": {}, "household_size": {}},
                **changes,
            }
        ),
        catalog,
    )


def _event(resident: dict[str, Any], op: Op = Op.CREATE) -> ChangeEvent:
    return change_event(
        department="public_security",
        dataset="resident",
        op=op,
        after=None if op is Op.DELETE else resident,
        before={Op.UPDATE: resident, Op.DELETE: resident}.get(op),
        system="t",
    )


class _Given:
    def __init__(self, event: ChangeEvent) -> None:
        self.event = event

    def decode(self, value: bytes | None) -> Any:
        return {**self.event}


def _route(dataset: Dataset, grants: tuple[CompiledGrant, ...], event: ChangeEvent) -> list[Output]:
    """What the engine writes for ``event``, its source record keyed by the raw ID number."""
    router = Router(
        lambda: PolicySnapshot({dataset.topic: grants}, {}), _Given(event), ViewEncoders(None)
    )
    source_key = dataset.key_of(event["after"] or event["before"]).encode()
    return router.route(dataset.topic, 0, 1, source_key, b"source", NOW).outputs


def _to_subscribers(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic.startswith("deliver.")]


def _everything(output: Output) -> bytes:
    return (
        (output.key or b"")
        + (output.value or b"")
        + b"".join(name.encode() + value for name, value in output.headers)
    )


def test_a_hashed_id_number_keys_by_its_hash_not_by_itself(dataset: Dataset) -> None:
    """Why: a grant hashing the ID number (the business key) delivered the hash in the body and
    the raw ID in the key: 10 of 10 records. Now none; the key is the hash the body shows."""
    grant = _grant(dataset, fields={"id_number": {"mask": {"type": "hash"}, "rename": "person"}})
    leaked = 0
    for resident in RESIDENTS:
        [delivered] = _to_subscribers(_route(dataset, (grant,), _event(resident)))
        view = decide(grant, _event(resident), NOW).view
        assert view is not None and view["after"] is not None
        assert delivered.key == view["after"]["person"].encode()
        leaked += resident["id_number"].encode() in _everything(delivered)
    assert leaked == 0


def test_a_grant_without_the_key_field_keys_by_a_pseudonym(dataset: Dataset) -> None:
    """Why: a statistics grant that sends no key field still handed the subscriber every
    household's ID number in the key. Now a keyed pseudonym: one per record, stable over its
    changes (compaction, order, upserts), different per subscriber, and not the ID."""
    statistics, planning = _grant(dataset), _grant(dataset, "planning")
    keys: dict[str, set[bytes]] = {}
    for resident in RESIDENTS:
        for op in (Op.CREATE, Op.UPDATE, Op.DELETE):
            outputs = _route(dataset, (statistics, planning), _event(resident, op))
            delivered = _to_subscribers(outputs)
            assert len(delivered) == 2
            for output in delivered:
                assert re.fullmatch(rb"[0-9a-f]{32}", output.key or b"")
                assert resident["id_number"].encode() not in _everything(output)
                keys.setdefault(f"{output.topic} {resident['id_number']}", set()).add(
                    output.key or b""
                )
            [audit] = [o for o in outputs if o.topic == AUDIT_TOPIC]
            assert resident["id_number"].encode() not in _everything(audit)
    assert all(len(k) == 1 for k in keys.values())  # one key per record and subscriber
    assert len(set().union(*keys.values())) == 2 * len(RESIDENTS)  # no two alike


def test_a_key_masked_so_that_records_could_share_it_keys_by_a_pseudonym(
    dataset: Dataset,
) -> None:
    """The last four digits of two ID numbers may coincide: keyed by them, two residents would
    be one record to compaction and upserts."""
    grant = _grant(dataset, fields={"id_number": {"mask": {"type": "show_last", "n": 4}}})
    decision = decide(grant, _event(RESIDENTS[0]), NOW)
    assert decision.view is not None and decision.key is not None
    assert re.fullmatch(rb"[0-9a-f]{32}", decision.key)
    assert decision.view["after"]["id_number"].encode() != decision.key


def test_a_key_sent_as_is_keys_as_the_view_has_it(dataset: Dataset) -> None:
    grant = _grant(
        dataset,
        fields={"id_number": {"approved_unmasked": "A-1", "rename": "citizen"}},
    )
    delivered = _to_subscribers(_route(dataset, (grant,), _event(RESIDENTS[3])))
    assert [o.key for o in delivered] == [RESIDENTS[3]["id_number"].encode()]


def test_enumerating_id_numbers_finds_an_unkeyed_hash_and_not_the_keyed_one(
    dataset: Dataset,
) -> None:
    """Why: the hash mask was an unkeyed SHA-256, and an ID number was recovered from it by
    enumerating region, birth date, sequence and check digit. Here 31,000 candidates: the
    unkeyed hash is found among them, the delivered keyed hash matches none, not even with
    the secret guessed wrong."""
    target = RESIDENTS[4]
    grant = _grant(dataset, fields={"id_number": {"mask": {"type": "hash"}}})
    view = decide(grant, _event(target), NOW).view
    assert view is not None and view["after"] is not None
    delivered: str = view["after"]["id_number"]
    version, key_id, digest = delivered.split(":")
    assert version == "v1" and re.fullmatch(r"[0-9a-f]{8}", key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)

    candidates = [resident_id("310115", born, seq) for born in BORN for seq in range(1000)]
    assert target["id_number"] in candidates and all(map(is_valid_resident_id, candidates[:50]))
    unkeyed = hashlib.sha256(target["id_number"].encode()).hexdigest()
    by_sha256 = {hashlib.sha256(c.encode()).hexdigest(): c for c in candidates}
    assert by_sha256[unkeyed] == target["id_number"]  # what the old mask gave away
    assert digest not in by_sha256 and delivered not in by_sha256
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XBUS_PSEUDONYM_KEY", "a-guess-at-the-office-secret")
        guessed = Hash(type="hash").function()
        assert not any(guessed(c) == delivered for c in candidates)


def test_a_new_secret_hashes_under_a_new_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotation: values hashed under two secrets are told apart by their key id."""
    first = Hash(type="hash").function()("310115199003010012")
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "the-office-secret-of-2027")
    second = Hash(type="hash").function()("310115199003010012")
    assert first.split(":")[0] == second.split(":")[0] == "v1"
    assert first.split(":")[1] != second.split(":")[1]


def test_a_failure_after_the_row_filter_is_the_subscribers_dead_letter_without_the_record(
    dataset: Dataset,
) -> None:
    """Why: a derived field that failed at run time sent the raw source record to the dead
    letters. A nullable one is now null; one declared non-null fails the grant's event, which
    goes to the subscriber's dead letters with the envelope only, keyed as delivered."""
    rule = {"cel": "2147483648 + record.household_size", "type": "int", "nullable": False}
    grant = _grant(dataset, derive={"big": rule})
    resident = RESIDENTS[1]
    outputs = _route(dataset, (grant,), _event(resident))

    [letter] = [o for o in outputs if o.topic != AUDIT_TOPIC]
    assert letter.topic == subscriber_dead_letter_topic("statistics")
    assert letter.key == decide(grant, _event(resident), NOW).key
    held = json.loads(letter.value or b"")
    assert held["reason"] == "derive.big gave an int out of the range of int"
    assert "before" not in held and "after" not in held
    for withheld in (resident["id_number"], resident["name"]):
        assert withheld.encode() not in _everything(letter)
    assert dict(letter.headers)[headers.DLQ_REASON] == b"grant_failed"
    [audit] = [o for o in outputs if o.topic == AUDIT_TOPIC]
    [decided] = json.loads(audit.value or b"")["decisions"]
    assert decided["decision"] == "failed"

    nullable = _grant(dataset, derive={"big": {**rule, "nullable": True}})
    view = decide(nullable, _event(resident), NOW).view
    assert view is not None and view["after"]["big"] is None
