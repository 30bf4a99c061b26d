"""The engine on the real broker keys deliveries from the view, and leaves a grant that fails
after its row filter held as a dead letter on the subscriber's own topic, without the record."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from tests.conftest import Bus
from tests.support.components import engine, wait_for
from tests.support.kafka_reading import read_events
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.topics import subscriber_dead_letter_topic
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants

pytestmark = pytest.mark.broker


def _grant(path: Path, subscriber: str, body: str) -> Path:
    path.write_text(
        f"grant: {subscriber.replace('_', '-')}\nsubscriber: {subscriber}\n"
        "dataset: health.clinic\npurpose: engine test\nlegal_basis: test\n"
        f"valid_from: 2026-01-01T00:00:00+08:00\n{body}"
    )
    return path


def test_keys_come_from_the_view_and_failures_reach_the_subscriber_without_the_record(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    keyless, failing = f"keyless_{tag}", f"failing_{tag}"
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [
            _grant(tmp_path / "k.yaml", keyless, "fields:\n  name: {}\n"),
            _grant(
                tmp_path / "f.yaml",
                failing,
                "fields:\n  clinic_code: {}\nderive:\n  big: {cel: '2147483648 + "
                "size(record.name)', type: int, nullable: false}\n",
            ),
        ],
    )
    clinic = DemoData(seed=int(tag, 16)).clinic()
    with Publisher("health", system="engine-test", settings=bus.settings) as p:
        event_id = p.publish_sync("clinic", Op.SNAPSHOT, after=clinic).event_id

    letters: dict[str, tuple[bytes | None, dict[str, bytes], bytes]] = {}
    with engine(bus, tmp_path, f"keys-{tag}"):
        found = read_events(bus.settings, f"deliver.{keyless}.clinic", {event_id}, 90)
        consumer = Consumer(bus.settings.consumer_config(f"keys-{uuid.uuid4()}"))
        consumer.subscribe([subscriber_dead_letter_topic(failing)])

        def arrived() -> bool:
            for message in consumer.consume(100, timeout=0.5):
                if not message.error():
                    held = json.loads(message.value() or b"{}")
                    letters[held["event_id"]] = (
                        message.key(),
                        dict(message.headers() or []),
                        message.value() or b"",
                    )
            return event_id in letters

        try:
            wait_for(arrived, 90, "the failed grant's dead letter on the subscriber's topic")
        finally:
            consumer.close()

    key, _ = found[event_id]
    assert key is not None and re.fullmatch(rb"[0-9a-f]{32}", key)  # not the clinic code
    letter_key, letter_headers, value = letters[event_id]
    assert letter_key == clinic["clinic_code"].encode()  # as the grant delivers it
    assert letter_headers["xbus-dlq-reason"] == b"grant_failed"
    held = json.loads(value)
    assert "after" not in held and "before" not in held
    assert clinic["name"].encode() not in value
