"""The audit trail's hash chains without Kafka: sealing, the outsider's recipe of
docs/audit.md, and ``verify`` on untouched trails and on each kind of tampering."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.checkout import ROOT
from xbus.streams.audit import GENESIS, AuditChains, AuditEntry, Head, record_hash, verify
from xbus.streams.audit_trail import murmur2, partition_of

CHAINS = ("gov.health.clinic/0", "gov.health.clinic/1", "gov.civil_affairs.marriage/2")


def _content(n: int, decision: str = "delivered") -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "department": "health",
        "dataset": "clinic",
        "op": "CREATE",
        "source": {"topic": "gov.health.clinic", "partition": 0, "offset": n},
        "at": "2026-11-30T02:19:41+00:00",
        "decisions": [
            {
                "subscriber": "tax_bureau",
                "grant": "g",
                "version": 1,
                "decision": decision,
                "reason": '名称 \u2028 \x1f "quoted" \\',
                "masks": [],
            }
        ],
    }


def _trail(per_chain: int = 5) -> list[AuditEntry]:
    """Records of three chains interleaved in one partition, as the engine writes them."""
    chains = AuditChains()
    entries = []
    for n in range(per_chain):
        for chain in CHAINS:
            value = chains.seal(chain, _content(n))
            entries.append(AuditEntry(0, len(entries), chain.encode(), value))
    return entries


def _renumbered(entries: list[AuditEntry]) -> list[AuditEntry]:
    """``entries`` as copied to another topic: offsets from 0, in the order given."""
    return [AuditEntry(e.partition, i, e.key, e.value) for i, e in enumerate(entries)]


def _record(entry: AuditEntry) -> dict[str, Any]:
    return dict(json.loads(entry.value or b""))


def _at(entries: list[AuditEntry], chain: str, seq: int) -> int:
    """The index of ``chain``'s record ``seq`` in ``entries``."""
    return next(
        i
        for i, e in enumerate(entries)
        if _record(e)["chain"] == chain and _record(e)["seq"] == seq
    )


def _with(entry: AuditEntry, record: dict[str, Any]) -> AuditEntry:
    return entry._replace(value=json.dumps(record).encode())


def test_records_chain_seq_prev_and_hash() -> None:
    trail = _trail(3)
    records = [_record(e) for e in trail if e.key == CHAINS[1].encode()]
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[0]["prev"] == GENESIS
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    for r in records:
        assert r["chain"] == CHAINS[1]
        assert r["hash"] == record_hash({k: v for k, v in r.items() if k != "hash"})


def test_the_outsiders_recipe_of_the_docs_verifies_a_chain() -> None:
    """The ten lines of docs/audit.md, run as written, on records the engine sealed (with
    non-ASCII text, a line separator and control characters in a reason)."""
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    [recipe] = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len([line for line in recipe.splitlines() if line.strip()]) <= 10
    namespace: dict[str, Any] = {}
    exec(recipe, namespace)
    verify_chain = namespace["verify_chain"]

    trail = _trail(4)
    for chain in CHAINS:
        records = [_record(e) for e in trail if e.key == chain.encode()]
        assert verify_chain(records) == records[-1]["hash"]
    edited = [_record(e) for e in trail if e.key == CHAINS[0].encode()]
    edited[2]["decisions"][0]["decision"] = "denied"
    with pytest.raises(AssertionError, match="seq 2 altered"):
        verify_chain(edited)


def test_an_untouched_trail_verifies() -> None:
    verdict = verify(_trail(5))
    assert verdict.intact
    assert (verdict.records, verdict.chains) == (15, 3)


def test_sealing_continues_from_a_recovered_head() -> None:
    first = AuditChains()
    values = [first.seal(CHAINS[0], _content(n)) for n in range(3)]
    last = json.loads(values[-1])
    again = AuditChains(lambda chains: {CHAINS[0]: Head(last["seq"], last["hash"])})
    values.append(again.seal(CHAINS[0], _content(3)))
    entries = [AuditEntry(0, i, CHAINS[0].encode(), v) for i, v in enumerate(values)]
    assert verify(entries).intact
    assert json.loads(values[-1])["seq"] == 3


def test_marked_heads_come_back_when_sealed_records_are_not_written() -> None:
    chains = AuditChains()
    written = [chains.seal(CHAINS[0], _content(0))]
    mark = chains.mark()
    chains.seal(CHAINS[0], _content(1))  # routed, then the registry failed: never written
    chains.restore(mark)
    written.append(chains.seal(CHAINS[0], _content(1)))
    entries = [AuditEntry(0, i, CHAINS[0].encode(), v) for i, v in enumerate(written)]
    assert verify(entries).intact


def test_an_edited_decision_is_found_at_its_record() -> None:
    trail = _trail()
    i = _at(trail, CHAINS[1], 2)
    record = _record(trail[i])
    record["decisions"][0]["decision"] = "denied"
    trail[i] = _with(trail[i], record)

    broken = verify(trail).first_break
    assert broken is not None
    assert (broken.kind, broken.partition, broken.offset, broken.chain, broken.seq) == (
        "altered",
        0,
        i,
        CHAINS[1],
        2,
    )
    assert "does not match its hash" in broken.detail


def test_an_edit_hashed_again_is_found_at_the_edited_record() -> None:
    trail = _trail()
    i = _at(trail, CHAINS[1], 2)
    record = _record(trail[i])
    record["decisions"][0]["decision"] = "denied"
    record["hash"] = record_hash({k: v for k, v in record.items() if k != "hash"})
    trail[i] = _with(trail[i], record)

    broken = verify(trail).first_break
    assert broken is not None
    assert (broken.kind, broken.offset, broken.chain, broken.seq) == ("altered", i, CHAINS[1], 2)
    assert "links to another record" in broken.detail


def test_a_removed_record_is_found_where_the_gap_is() -> None:
    trail = _trail()
    gone = _at(trail, CHAINS[2], 1)
    copy = _renumbered(trail[:gone] + trail[gone + 1 :])
    after = _at(copy, CHAINS[2], 2)

    broken = verify(copy).first_break
    assert broken is not None
    assert (broken.kind, broken.offset, broken.chain, broken.seq) == (
        "removed",
        after,
        CHAINS[2],
        2,
    )
    assert "seq 1 missing" in broken.detail


def test_a_chain_whose_first_records_are_gone_is_broken_unless_read_from_midway() -> None:
    trail = _trail()
    copy = _renumbered([e for e in trail if _record(e)["seq"] >= 2])
    broken = verify(copy).first_break
    assert broken is not None and broken.kind == "removed" and broken.seq == 2

    verdict = verify(copy, midway=True)
    assert verdict.intact
    assert verdict.begun_midway == dict.fromkeys(CHAINS, 2)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_forged_record_is_found_wherever_it_was_inserted(where: str) -> None:
    """The strongest forgery: the next seq, the right prev, its own hash right."""
    trail = _trail()
    genuine = _at(trail, CHAINS[0], 3)
    head = _record(trail[_at(trail, CHAINS[0], 2)])
    forged = {**_content(99, "delivered"), "chain": CHAINS[0], "seq": 3, "prev": head["hash"]}
    forged["hash"] = record_hash(forged)
    at = genuine if where == "before" else genuine + 1
    copy = _renumbered([*trail[:at], _with(trail[0], forged), *trail[at:]])

    broken = verify(copy).first_break
    assert broken is not None
    assert (broken.kind, broken.offset, broken.chain, broken.seq) == ("inserted", at, CHAINS[0], 3)


def test_a_copy_of_an_old_record_is_an_insertion() -> None:
    trail = _trail()
    copy = _renumbered([*trail, trail[_at(trail, CHAINS[1], 1)]])
    broken = verify(copy).first_break
    assert broken is not None
    assert (broken.kind, broken.offset, broken.seq) == ("inserted", len(trail), 1)


def test_two_swapped_records_are_reordered() -> None:
    trail = _trail()
    a, b = _at(trail, CHAINS[1], 2), _at(trail, CHAINS[1], 3)
    trail[a], trail[b] = trail[b], trail[a]
    copy = _renumbered(trail)

    broken = verify(copy).first_break
    assert broken is not None
    assert (broken.kind, broken.offset, broken.chain, broken.seq) == ("reordered", a, CHAINS[1], 3)
    assert f"seq 3 comes before seq 2, which is at offset {b}" in broken.detail


def test_a_record_moved_to_another_chain_or_partition_is_caught() -> None:
    trail = _trail()
    i = _at(trail, CHAINS[0], 1)
    rekeyed = list(trail)
    rekeyed[i] = trail[i]._replace(key=CHAINS[1].encode())
    broken = verify(rekeyed).first_break
    assert broken is not None and broken.kind == "altered" and "key" in broken.detail

    moved = list(trail)
    moved[i] = trail[i]._replace(partition=1)
    broken = verify(moved).first_break
    assert broken is not None and broken.kind == "inserted" and broken.partition == 1


def test_something_else_than_an_audit_record_is_caught() -> None:
    trail = _trail(2)
    trail.insert(1, AuditEntry(0, 1, b"x", b"not json"))
    broken = verify(_renumbered(trail)).first_break
    assert broken is not None
    assert (broken.kind, broken.offset) == ("altered", 1)
    assert "not an audit record" in broken.detail


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # Kafka's own test vectors (UtilsTest.testMurmur2), as signed 32-bit numbers
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF
    assert 0 <= partition_of(data, 3) < 3
