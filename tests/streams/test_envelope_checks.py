"""The engine on the real broker trusts no envelope: an event whose department or dataset is
not its topic's, whose op lacks the images it requires, or whose key is not its business key
goes to the dead letters with its own reason, and no subscriber receives it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from tests.conftest import Bus
from tests.support.components import engine, wait_for
from tests.support.kafka_reading import read_events
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
from xbus.core.serde import WireEncoder, registered_schema_id, registry_client
from xbus.core.topics import DEAD_LETTER_TOPIC, value_subject
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants

pytestmark = pytest.mark.broker


def _grant(path: Path, subscriber: str) -> Path:
    path.write_text(
        f"grant: {subscriber.replace('_', '-')}\n"
        f"subscriber: {subscriber}\n"
        "dataset: market_regulation.business_licence\n"
        "purpose: envelope test\n"
        "legal_basis: test\n"
        "approval: TEST-ENVELOPE-1\n"
        "valid_from: 2026-01-01T00:00:00+08:00\n"
        "fields:\n  credit_code: {}\n  name: {}\n"
    )
    return path


def test_forged_envelopes_go_to_the_dead_letters_with_their_reason_and_to_no_one(
    registered: Bus, tmp_path: Path
) -> None:
    bus = registered
    catalog = Catalog.load(bus.settings.schemas_dir)
    licences = catalog.get("market_regulation", "business_licence")
    subscribers = [f"env_{n}_{uuid.uuid4().hex[:6]}" for n in (1, 2)]
    apply_grants(bus.settings, catalog, [_grant(tmp_path / f"{s}.yaml", s) for s in subscribers])
    schema_id = registered_schema_id(
        registry_client(bus.settings), value_subject(licences.topic), licences.envelope
    )
    assert schema_id is not None
    encoder = WireEncoder(schema_id, licences.envelope)
    data = DemoData(seed=31)

    def forged(op: Op, key: str | None = None, **changes: Any) -> tuple[str, bytes, bytes]:
        licence = data.business_licence()
        event = change_event(
            department="market_regulation",
            dataset="business_licence",
            op=op,
            after=None if op is Op.DELETE else licence,
            before=licence if op in (Op.UPDATE, Op.DELETE) else None,
            system="forger",
        )
        event = {**event, **changes}  # type: ignore[typeddict-item]
        value = encoder.encode(with_union_branches(event, record_full_name(licences.schema)))
        return event["event_id"], (key or licences.key_of(licence)).encode(), value

    cases = {
        "wrong_department": forged(Op.CREATE, department="health"),
        "wrong_dataset": forged(Op.CREATE, dataset="clinic"),
        "missing_image": forged(Op.UPDATE, before=None, after=None),
        "key_mismatch": forged(Op.CREATE, key="91310000NOT-ITS-KEY"),
    }
    producer = Producer(bus.settings.producer_config())
    for _, key, value in cases.values():
        producer.produce(licences.topic, key=key, value=value)
    assert producer.flush(30) == 0

    with engine(bus, tmp_path, f"envelope-{subscribers[0]}"):
        with Publisher("market_regulation", system="t", settings=bus.settings) as bureau:
            good = bureau.publish_sync(
                "business_licence", Op.CREATE, after=data.business_licence()
            ).event_id
        for subscriber in subscribers:
            # The engine is running and routing this topic for both subscribers.
            topic = f"deliver.{subscriber}.business_licence"
            assert read_events(bus.settings, topic, {good}, 90)
        reasons = _dead_letter_reasons(bus, {value for _, _, value in cases.values()})

    assert reasons == {value: reason for reason, (_, _, value) in cases.items()}
    forged_ids = {event_id for event_id, _, _ in cases.values()}
    for subscriber in subscribers:
        topic = f"deliver.{subscriber}.business_licence"
        assert not read_events(bus.settings, topic, forged_ids, 5)


def _dead_letter_reasons(bus: Bus, values: set[bytes]) -> dict[bytes, str]:
    consumer = Consumer(bus.settings.consumer_config(f"dlq-{uuid.uuid4()}"))
    consumer.subscribe([DEAD_LETTER_TOPIC])
    found: dict[bytes, str] = {}

    def all_found() -> bool:
        for message in consumer.consume(100, timeout=0.5):
            value = message.value()
            if value in values:
                found[value] = dict(message.headers() or [])["xbus-dlq-reason"].decode()
        return found.keys() == values

    try:
        wait_for(all_found, 60, "every forged event on the dead-letter topic")
    finally:
        consumer.close()
    return found
