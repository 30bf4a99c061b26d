"""The producer SDK on the real broker and registry."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from concurrent.futures import Future, wait
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.support.checkout import ROOT
from tests.support.kafka_reading import end_offsets, read_events
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.deploy.process import free_port
from xbus.producers.demodata import DemoData
from xbus.producers.exceptions import (
    BrokerUnreachable,
    ForeignDataset,
    InvalidBatch,
    InvalidRecord,
    SchemaNotRegistered,
    UnknownDataset,
)
from xbus.producers.publisher import EventSpec, Publisher, Receipt

pytestmark = pytest.mark.broker

LICENCES = "gov.market_regulation.business_licence"


def test_sync_async_and_batch_events_decode_with_stock_tools(registered: Bus) -> None:
    data = DemoData(seed=21)
    licence, updated = data.business_licence(), None
    with Publisher("market_regulation", system="sdk-test", settings=registered.settings) as p:
        created = p.publish_sync("business_licence", Op.CREATE, after=licence)
        updated = {**licence, "status": "SUSPENDED"}
        changed = asyncio.run(
            p.publish_async(
                "business_licence", Op.UPDATE, before=licence, after=updated, trace_id="case-7"
            )
        )
        batch = p.publish_batch(
            "business_licence",
            [EventSpec(Op.CREATE, after=data.business_licence()) for _ in range(50)],
        )
    ids = {created.event_id, changed.event_id, *(r.event_id for r in batch)}

    found = read_events(registered.settings, LICENCES, ids)

    assert found.keys() == ids
    key, event = found[changed.event_id]
    assert key == licence["credit_code"].encode()
    assert event["op"] == "UPDATE"
    assert event["before"]["status"] == "ACTIVE" and event["after"]["status"] == "SUSPENDED"
    assert event["after"]["registered_capital"] == licence["registered_capital"]
    assert event["source"] == {"system": "sdk-test", "origin": "sdk", "trace_id": "case-7"}
    assert created.topic == LICENCES and created.offset >= 0


def test_futures_settle_without_a_flush_and_a_done_callback_may_publish_again(
    registered: Bus,
) -> None:
    data = DemoData(seed=23)
    again: list[Future[Receipt]] = []

    def publish_again(_: Future[Receipt]) -> None:
        again.append(p.publish("business_licence", Op.CREATE, after=data.business_licence()))

    with Publisher("market_regulation", system="sdk-test", settings=registered.settings) as p:
        first = p.publish("business_licence", Op.CREATE, after=data.business_licence())
        first.add_done_callback(publish_again)  # called while the next ones are published
        futures = [first] + [
            p.publish("business_licence", Op.CREATE, after=data.business_licence())
            for _ in range(1999)
        ]
        # No flush: publishing serves the acknowledgements, then the publisher's own thread.
        _, pending = wait(futures, timeout=30)
        assert not pending
        assert again[0].result(timeout=30).topic == LICENCES
    assert len({f.result().event_id for f in futures}) == 2000


def test_invalid_records_are_refused_with_every_path_and_nothing_is_produced(
    registered: Bus,
) -> None:
    data = DemoData(seed=22)
    bad = {**data.business_licence(), "registered_capital": "1.001", "status": "OPEN"}
    before = end_offsets(registered.settings, LICENCES)
    with Publisher("market_regulation", system="sdk-test", settings=registered.settings) as p:
        with pytest.raises(InvalidRecord) as single:
            p.publish("business_licence", Op.CREATE, after=bad)
        with pytest.raises(InvalidBatch) as batch:
            p.publish_batch(
                "business_licence",
                [
                    EventSpec(Op.CREATE, after=data.business_licence()),
                    EventSpec(Op.CREATE, after=bad),
                    EventSpec(Op.DELETE, after=data.business_licence()),
                ],
            )
    assert {e.path for e in single.value.errors} == {"after.registered_capital", "after.status"}
    assert set(batch.value.errors) == {1, 2}
    assert {e.path for e in batch.value.errors[2]} == {"before"}
    assert end_offsets(registered.settings, LICENCES) == before


def test_other_departments_datasets_and_unknown_ones_are_refused(registered: Bus) -> None:
    with Publisher("health", system="sdk-test", settings=registered.settings) as p:
        with pytest.raises(ForeignDataset, match="belongs to market_regulation"):
            p.publish("business_licence", Op.CREATE, after=DemoData(1).business_licence())
        with pytest.raises(UnknownDataset, match="its datasets: clinic, vaccination_record"):
            p.publish("clinics", Op.CREATE, after={})


def test_a_schema_not_registered_is_a_typed_error(registered: Bus, tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schemas)
    path = schemas / "health" / "clinic.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(
        {
            "name": f"note_{uuid.uuid4().hex[:6]}",
            "type": ["null", "string"],
            "default": None,
            "classification": "public",
        }
    )
    path.write_text(json.dumps(schema))
    catalog = Catalog.load(schemas)
    publisher = Publisher(
        "health", system="sdk-test", settings=registered.settings, catalog=catalog
    )
    with publisher, pytest.raises(SchemaNotRegistered, match="xbus schemas register"):
        publisher.publish("clinic", Op.SNAPSHOT, after=DemoData(2).clinic())


def test_an_unreachable_broker_fails_after_the_bounded_wait(registered: Bus) -> None:
    dead = registered.settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    started = time.monotonic()
    publisher = Publisher("health", system="sdk-test", settings=dead, delivery_timeout=2)
    future = publisher.publish("clinic", Op.SNAPSHOT, after=DemoData(3).clinic())
    with pytest.raises(BrokerUnreachable, match="did not acknowledge"):
        future.result(timeout=30)
    with pytest.raises(BrokerUnreachable):
        publisher.publish_sync("clinic", Op.SNAPSHOT, after=DemoData(4).clinic())
    publisher.close()
    assert time.monotonic() - started < 30
