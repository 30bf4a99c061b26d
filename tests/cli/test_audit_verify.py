"""``xbus audit verify`` on the trail real engine workers wrote, restarted and replaying, and
on copies of it with one record edited, removed, forged or swapped."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.conftest import Bus
from tests.support.components import engine, run_xbus, wait_for
from tests.support.kafka_reading import read_events
from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.topics import AUDIT_TOPIC
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import EventSpec, Publisher
from xbus.streams.audit import AuditEntry, record_hash
from xbus.streams.audit_trail import partition_of, read_trail
from xbus.streams.grant_files import apply_grants

pytestmark = pytest.mark.broker


def _xbus(bus: Bus, *args: str) -> subprocess.CompletedProcess[str]:
    return run_xbus(bus.env(), *args, timeout=300)


def _publish(bus: Bus, count: int) -> list[str]:
    data = DemoData()
    with Publisher("health", system="audit-test", settings=bus.settings) as p:
        specs = [EventSpec(Op.SNAPSHOT, after=data.clinic()) for _ in range(count)]
        return [r.event_id for r in p.publish_batch("clinic", specs)]


def _records(bus: Bus, topic: str = AUDIT_TOPIC) -> list[tuple[AuditEntry, dict[str, Any]]]:
    return [(e, json.loads(e.value or b"")) for e in read_trail(bus.settings, topic)]


def _audited(bus: Bus, events: set[str], times: int) -> Callable[[], bool]:
    def enough() -> bool:
        seen: dict[str, int] = {}
        for _, record in _records(bus):
            if record.get("event_id") in events:
                seen[record["event_id"]] = seen.get(record["event_id"], 0) + 1
        return len(seen) == len(events) and min(seen.values()) >= times

    return enough


@pytest.fixture(scope="module")
def trail(registered: Bus, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The ids of events audited by an engine worker stopped mid-stream and started again,
    then replayed from the start by a worker of another group."""
    bus, tag = registered, uuid.uuid4().hex[:6]
    tmp = tmp_path_factory.mktemp("audit")
    subscriber = f"auditee_{tag}"
    grant = tmp / "grant.yaml"
    grant.write_text(
        f"grant: auditee-{tag}\nsubscriber: {subscriber}\ndataset: health.clinic\n"
        "purpose: audit test\nlegal_basis: test\nvalid_from: 2026-01-01T00:00:00+08:00\n"
        "fields:\n  clinic_code: {}\n"
    )
    apply_grants(bus.settings, Catalog.load(bus.settings.schemas_dir), [grant])
    delivered = f"deliver.{subscriber}.clinic"
    events: list[str] = []
    with engine(bus, tmp, f"audit-{tag}", name="engine-1"):
        events += _publish(bus, 40)
        assert len(read_events(bus.settings, delivered, set(events), 90)) == 40
        events += _publish(bus, 40)  # stopped while these flow
    with engine(bus, tmp, f"audit-{tag}", name="engine-2"):
        events += _publish(bus, 40)
        assert len(read_events(bus.settings, delivered, set(events), 90)) == 120
        wait_for(_audited(bus, set(events), 1), 60, "every event in the audit trail")
    with engine(bus, tmp, f"audit-replay-{tag}", name="engine-3"):
        wait_for(_audited(bus, set(events), 2), 120, "every event audited again by a replay")
    return set(events)


def test_the_trail_of_restarted_and_replaying_workers_verifies(
    registered: Bus, trail: set[str]
) -> None:
    records = _records(registered)
    ours = [(e, r) for e, r in records if r.get("event_id") in trail]
    chains = {r["chain"] for _, r in ours}
    # One chain per source partition (3, or 12 when bus.yaml provisioned the topic first).
    admin = AdminClient(registered.settings.kafka_config())
    source = admin.list_topics("gov.health.clinic", timeout=30).topics["gov.health.clinic"]
    assert chains <= {f"gov.health.clinic/{p}" for p in source.partitions}
    for entry, record in ours:  # where the worker looks for a chain's head
        assert entry.key == record["chain"].encode()
        assert entry.partition == partition_of(entry.key, 3)

    result = _xbus(registered, "audit", "verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(records)} records in " in result.stdout
    assert "chains verified" in result.stdout


def test_verify_from_an_offset_or_a_time_takes_chains_from_midway(
    registered: Bus, trail: set[str]
) -> None:
    entry, record = next(
        (e, r) for e, r in _records(registered) if r.get("event_id") in trail and r["seq"] > 0
    )

    start = f"{entry.partition}:{entry.offset}"
    from_offset = _xbus(registered, "audit", "verify", "--from", start)
    assert from_offset.returncode == 0, from_offset.stdout + from_offset.stderr
    assert "taken from their first record seen" in from_offset.stdout
    assert f"{record['chain']} at seq {record['seq']}" in from_offset.stdout

    from_time = _xbus(registered, "audit", "verify", "--from", record["at"])
    assert from_time.returncode == 0, from_time.stdout + from_time.stderr
    assert "chains verified from" in from_time.stdout

    bad = _xbus(registered, "audit", "verify", "--from", "yesterday")
    assert bad.returncode == 2 and "neither partition:offset" in bad.stderr


def _copy(bus: Bus, entries: list[AuditEntry], tag: str) -> str:
    """``entries`` written to a new 3-partition topic, each to its own partition."""
    topic = f"_xbus.audit-copy-{tag}-{uuid.uuid4().hex[:6]}"
    ensure_topics(bus.settings, {topic: 3})
    producer = Producer(bus.settings.producer_config())
    for e in entries:
        producer.produce(topic, value=e.value, key=e.key, partition=e.partition)
        producer.poll(0)
    assert producer.flush(30) == 0
    return topic


def _copy_offset(entries: list[AuditEntry], index: int) -> int:
    """The offset ``entries[index]`` gets in a copy: its place among its partition's."""
    partition = entries[index].partition
    return sum(1 for e in entries[:index] if e.partition == partition)


@pytest.mark.parametrize("tampering", ["altered", "removed", "inserted", "reordered"])
def test_verify_catches_tampering_with_its_coordinates(
    registered: Bus, trail: set[str], tampering: str
) -> None:
    records = _records(registered)
    chain = next(r["chain"] for _, r in records if r.get("event_id") in trail)
    # The copy holds this chain only (the whole trail of a long test run would be hundreds of
    # thousands of records): whole, from its first record.
    records = [(e, r) for e, r in records if r["chain"] == chain]
    mine = list(range(len(records)))
    target = mine[len(mine) // 2]  # a record in the middle of its chain
    entries = [e for e, _ in records]
    record = records[target][1]
    partition, seq = entries[target].partition, record["seq"]

    if tampering == "altered":
        edited = {**record, "decisions": [{**record["decisions"][0], "decision": "denied"}]}
        entries[target] = entries[target]._replace(value=json.dumps(edited).encode())
        expected = (_copy_offset(entries, target), seq)
    elif tampering == "removed":
        del entries[target]
        following = next(i for i in mine if i > target) - 1
        expected = (_copy_offset(entries, following), seq + 1)
    elif tampering == "inserted":  # the next seq, the right prev and its own hash: a forgery
        previous = records[max(i for i in mine if i < target)][1]
        forged = {**record, "event_id": str(uuid.uuid4()), "prev": previous["hash"]}
        forged["hash"] = record_hash({k: v for k, v in forged.items() if k != "hash"})
        entries.insert(target, entries[target]._replace(value=json.dumps(forged).encode()))
        expected = (_copy_offset(entries, target), seq)
    else:
        after = next(i for i in mine if i > target)
        entries[target], entries[after] = entries[after], entries[target]
        expected = (_copy_offset(entries, target), seq + 1)

    result = _xbus(registered, "audit", "verify", "--topic", _copy(registered, entries, tampering))

    assert result.returncode == 1, result.stdout + result.stderr
    offset, at_seq = expected
    assert (
        f"{tampering}: partition {partition} offset {offset} (chain {chain}, seq {at_seq})"
        in result.stderr
    ), result.stderr


def test_a_trail_the_user_cannot_see_is_told_as_missing_or_not_allowed(registered: Bus) -> None:
    """Kafka hides a topic from a user not allowed to read it: a subscriber running verify
    must hear that it may lack the right, and as whom it asked."""
    hidden = f"_xbus.audit-hidden-{uuid.uuid4().hex[:6]}"

    result = _xbus(registered, "audit", "verify", "--topic", hidden)

    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert f"sees no topic '{hidden}'" in said
    assert "not allowed to read it" in said and "xbus stack env" in said
    user = registered.settings.sasl_username
    assert (f"user '{user}'" if user else "this client") in said
