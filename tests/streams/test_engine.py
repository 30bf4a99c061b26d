"""The policy engine on the real broker and registry: grants applied, changed and revoked
while events flow, expiry, poison input, and two workers sharing the load."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer

from tests.conftest import Bus
from tests.support.checkout import ROOT
from tests.support.components import engine, metrics_port, wait_for
from tests.support.kafka_reading import read_events
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op
from xbus.core.serde import registry_client
from xbus.core.topics import DEAD_LETTER_TOPIC
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import EventSpec, Publisher
from xbus.streams.grant_files import apply_grants, revoke_grant

pytestmark = pytest.mark.broker

CLINICS = "gov.health.clinic"


def _grant(
    path: Path,
    subscriber: str,
    fields: str,
    *,
    grant_id: str | None = None,
    valid_until: dt.datetime | None = None,
) -> Path:
    path.write_text(
        f"grant: {grant_id or subscriber.replace('_', '-')}\n"
        f"subscriber: {subscriber}\n"
        "dataset: health.clinic\n"
        "purpose: engine test\n"
        "legal_basis: test\n"
        "valid_from: 2026-01-01T00:00:00+08:00\n"
        + (f"valid_until: {valid_until.isoformat()}\n" if valid_until else "")
        + f"fields:\n{fields}"
    )
    return path


def _metric(port: int, name: str, labels: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _publish(bus: Bus, count: int = 1, seed: int = 0) -> list[str]:
    data = DemoData(seed=seed or None)
    with Publisher("health", system="engine-test", settings=bus.settings) as p:
        return [
            r.event_id
            for r in p.publish_batch(
                "clinic", [EventSpec(Op.SNAPSHOT, after=data.clinic()) for _ in range(count)]
            )
        ]


@pytest.fixture()
def subscribers() -> Iterator[tuple[str, str]]:
    """A subscriber under test and a sentinel subscriber whose grant never changes."""
    tag = uuid.uuid4().hex[:6]
    yield f"watched_{tag}", f"sentinel_{tag}"


def test_grants_applied_changed_and_revoked_while_events_flow(
    registered: Bus, tmp_path: Path, subscribers: tuple[str, str]
) -> None:
    bus, (watched, sentinel) = registered, subscribers
    catalog = Catalog.load(bus.settings.schemas_dir)
    grant = _grant(tmp_path / "watched.yaml", watched, "  clinic_code: {}\n  name: {}\n")
    apply_grants(
        bus.settings,
        catalog,
        [grant, _grant(tmp_path / "sentinel.yaml", sentinel, "  clinic_code: {}\n")],
    )
    port = metrics_port()
    watched_topic, sentinel_topic = f"deliver.{watched}.clinic", f"deliver.{sentinel}.clinic"
    with engine(bus, tmp_path, f"hot-{watched}", port=port):
        [first] = _publish(bus)
        got = read_events(bus.settings, watched_topic, {first}, 90)
        assert set(got[first][1]["after"]) == {"clinic_code", "name"}

        _grant(grant, watched, "  clinic_code: {}\n  name: {mask: {type: redact}}\n  address: {}\n")
        [applied] = apply_grants(bus.settings, catalog, [grant])
        assert applied.version == 2
        wait_for(
            lambda: (
                _metric(port, "xbus_grant_version", f'grant="{watched.replace("_", "-")}"') == 2
            ),
            30,
            "the engine to apply version 2",
        )
        [second] = _publish(bus)
        got = read_events(bus.settings, watched_topic, {second}, 60)
        after = got[second][1]["after"]
        assert after["name"] == "***" and "address" in after

        assert revoke_grant(bus.settings, watched.replace("_", "-"))
        wait_for(
            lambda: (
                _metric(port, "xbus_grant_version", f'grant="{watched.replace("_", "-")}"') is None
            ),
            30,
            "the engine to drop the revoked grant",
        )
        [third] = _publish(bus)
        assert read_events(bus.settings, sentinel_topic, {third}, 60).keys() == {third}
    assert third not in read_events(bus.settings, watched_topic, {third}, 5)


def test_an_expired_grant_stops_delivery_by_itself(
    registered: Bus, tmp_path: Path, subscribers: tuple[str, str]
) -> None:
    bus, (watched, sentinel) = registered, subscribers
    catalog = Catalog.load(bus.settings.schemas_dir)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=25)
    apply_grants(
        bus.settings,
        catalog,
        [
            _grant(tmp_path / "w.yaml", watched, "  clinic_code: {}\n", valid_until=until),
            _grant(tmp_path / "s.yaml", sentinel, "  clinic_code: {}\n"),
        ],
    )
    port = metrics_port()
    with engine(bus, tmp_path, f"exp-{watched}", port=port):
        [before] = _publish(bus)
        assert read_events(bus.settings, f"deliver.{watched}.clinic", {before}, 90)
        remaining = _metric(port, "xbus_grant_seconds_until_expiry", f'subscriber="{watched}"')
        assert remaining is not None and 0 < remaining <= 25
        wait_for(lambda: dt.datetime.now(dt.UTC) > until, 40, "the grant to expire")
        [after] = _publish(bus)
        assert read_events(bus.settings, f"deliver.{sentinel}.clinic", {after}, 60)
    assert not read_events(bus.settings, f"deliver.{watched}.clinic", {after}, 5)


def test_poison_input_goes_to_dead_letters_and_good_events_flow(
    registered: Bus, tmp_path: Path, subscribers: tuple[str, str]
) -> None:
    bus, (watched, _) = registered, subscribers
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [_grant(tmp_path / "w.yaml", watched, "  clinic_code: {}\n")],
    )
    poison = f"not avro {uuid.uuid4()}".encode()
    unknown_id = b"\x00\x7f\xff\xff\xf0" + poison
    producer = Producer(bus.settings.producer_config())
    producer.produce(CLINICS, key=b"poison", value=poison)
    producer.produce(CLINICS, key=b"poison", value=unknown_id)
    assert producer.flush(30) == 0
    port = metrics_port()
    with engine(bus, tmp_path, f"dlq-{watched}", port=port):
        [good] = _publish(bus)
        assert read_events(bus.settings, f"deliver.{watched}.clinic", {good}, 90)
        assert (_metric(port, "xbus_dead_letters_total", 'reason="not_wire_format"') or 0) >= 1

    consumer = Consumer(bus.settings.consumer_config(f"dlq-{uuid.uuid4()}"))
    consumer.subscribe([DEAD_LETTER_TOPIC])
    found: dict[bytes, dict[str, bytes]] = {}

    def both() -> bool:
        for message in consumer.consume(100, timeout=0.5):
            if message.value() in (poison, unknown_id):
                found[message.value()] = dict(message.headers() or [])
        return len(found) == 2

    try:
        wait_for(both, 30, "both poison records on the dead-letter topic")
    finally:
        consumer.close()
    assert found[poison]["xbus-dlq-reason"] == b"not_wire_format"
    assert found[unknown_id]["xbus-dlq-reason"] == b"unknown_schema_id"
    assert found[poison]["xbus-source-topic"] == CLINICS.encode()


def _shared_by(
    bus: Bus, ports: list[int], watched: str, seed: int
) -> tuple[set[str], dict[str, Any], list[float]]:
    """Once the workers serving /metrics on ``ports`` all hold partitions: 300 events
    published, what ``watched`` received of them, and how many each worker delivered."""
    wait_for(
        lambda: all((_metric(p, "xbus_engine_assigned_partitions", "") or 0) > 0 for p in ports),
        60,
        "every worker to be assigned partitions",
    )
    ids = set(_publish(bus, count=300, seed=seed))
    got = read_events(bus.settings, f"deliver.{watched}.clinic", ids, 120)
    label = f'subscriber="{watched}"'
    return ids, got, [_metric(p, "xbus_events_delivered_total", label) or 0 for p in ports]


def test_two_workers_share_the_partitions_and_lose_nothing(
    registered: Bus, tmp_path: Path, subscribers: tuple[str, str]
) -> None:
    bus, (watched, _) = registered, subscribers
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [_grant(tmp_path / "w.yaml", watched, "  clinic_code: {}\n  name: {}\n")],
    )
    ports = [metrics_port(), metrics_port()]
    app_id = f"pair-{watched}"
    with (
        engine(bus, tmp_path, app_id, port=ports[0], name="engine-1"),
        engine(bus, tmp_path, app_id, port=ports[1], name="engine-2"),
    ):
        ids, got, per_worker = _shared_by(bus, ports, watched, seed=7)
    assert got.keys() == ids
    assert all(n > 0 for n in per_worker), per_worker
    assert sum(per_worker) >= len(ids)


def test_workers_option_runs_a_group_of_processes_that_share_the_work(
    registered: Bus, tmp_path: Path, subscribers: tuple[str, str]
) -> None:
    bus, (watched, _) = registered, subscribers
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [_grant(tmp_path / "w.yaml", watched, "  clinic_code: {}\n  name: {}\n")],
    )
    base = metrics_port()
    ports = [base, base + 1]
    with engine(bus, tmp_path, f"many-{watched}", port=base, extra=("--workers", "2")) as parent:
        ids, got, per_worker = _shared_by(bus, ports, watched, seed=11)
        parent.terminate()
        assert parent.wait(60) == 0
    assert got.keys() == ids
    assert all(n > 0 for n in per_worker), per_worker
    # Stopping the command stops its workers.
    wait_for(
        lambda: all(_metric(p, "xbus_engine_assigned_partitions", "") is None for p in ports),
        30,
        "the workers to stop",
    )


def test_a_new_departments_topic_is_picked_up_while_the_engine_runs(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    department = f"sports_{tag}"
    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schemas)
    (schemas / department).mkdir()
    (schemas / department / "venue.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Venue",
                "namespace": f"gov.{department}",
                "xbus.department": department,
                "xbus.business_key": ["venue_id"],
                "xbus.sharing": "unconditional",
                "fields": [
                    {"name": "venue_id", "type": "string", "classification": "public"},
                    {"name": "name", "type": "string", "classification": "public"},
                ],
            }
        )
    )
    catalog = Catalog.load(schemas)
    port = metrics_port()
    with engine(bus, tmp_path, f"new-{tag}", port=port, extra=("--discovery-interval", "1")):
        wait_for(
            lambda: (_metric(port, "xbus_engine_assigned_partitions", "") or 0) > 0,
            60,
            "the engine to start",
        )
        # The department's schema is registered and its grant applied by the office; the
        # running engine was deployed without the schema file.
        register_catalog(catalog, registry_client(bus.settings))
        subscriber = f"fans_{tag}"
        (tmp_path / "g.yaml").write_text(
            f"grant: fans-{tag}\nsubscriber: {subscriber}\ndataset: {department}.venue\n"
            "purpose: test\nlegal_basis: test\nvalid_from: 2026-01-01T00:00:00+08:00\n"
            "fields:\n  venue_id: {}\n  name: {}\n"
        )
        apply_grants(bus.settings, catalog, [tmp_path / "g.yaml"])
        with Publisher(department, system="t", settings=bus.settings, catalog=catalog) as p:
            event_id = p.publish_sync(
                "venue", Op.CREATE, after={"venue_id": "v1", "name": "黄龙体育中心"}
            ).event_id
        got = read_events(bus.settings, f"deliver.{subscriber}.venue", {event_id}, 120)
    assert got[event_id][1]["after"] == {"venue_id": "v1", "name": "黄龙体育中心"}
