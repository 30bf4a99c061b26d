"""One business licence from the department's publisher, through the policy engine, into the
tax bureau's file: the real broker, registry, engine and connector processes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Bus
from tests.support.checkout import ROOT
from tests.support.components import component, engine, metrics_port, wait_for
from tests.support.grant_helpers import load_grant
from tests.support.kafka_reading import read_events
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher

pytestmark = pytest.mark.broker

TAX_BUREAU = load_grant(ROOT / "grants/tax_bureau/business_licence.yaml")
TAX_TOPIC = "deliver.tax_bureau.business_licence"

FIELDS_WITHHELD = sorted(
    {"legal_representative_id", "contact_phone", "business_scope", "status", "issued_at"}
)


def _lines_with(path: Path, event_id: str) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    return [
        json.loads(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if event_id in line
    ]


def test_a_published_licence_reaches_the_tax_bureau_projected(granted: Bus, tmp_path: Path) -> None:
    bus = granted
    licence = DemoData(seed=7).business_licence()
    with Publisher("market_regulation", system="e2e-test", settings=bus.settings) as publisher:
        event_id = publisher.publish_sync("business_licence", Op.CREATE, after=licence).event_id

    out = tmp_path / "out"
    engine_metrics = metrics_port()
    with (
        engine(bus, tmp_path, f"e2e-{uuid.uuid4().hex[:8]}", port=engine_metrics),
        component(
            bus,
            tmp_path,
            "connector",
            "connector",
            "file",
            "--subscriber",
            "tax_bureau",
            "--dir",
            str(out),
            "--metrics-port",
            str(metrics_port()),
        ),
    ):
        target = out / "tax_bureau" / "business_licence.jsonl"
        [received] = wait_for(
            lambda: _lines_with(target, event_id), 90, f"event {event_id} in {target}"
        )
        metrics = httpx.get(f"http://127.0.0.1:{engine_metrics}/metrics").text

    assert received["op"] == "CREATE"
    assert received["before"] is None
    assert sorted(received["after"]) == sorted(TAX_BUREAU.fields)
    assert received["after"]["credit_code"] == licence["credit_code"]
    assert received["after"]["registered_capital"] == str(licence["registered_capital"])
    assert received["after"]["established_on"] == licence["established_on"].isoformat()
    raw_line = target.read_text(encoding="utf-8")
    assert licence["legal_representative_id"] not in raw_line
    for name in FIELDS_WITHHELD:
        assert name not in received["after"]
    delivered = [
        line
        for line in metrics.splitlines()
        if line.startswith('xbus_events_delivered_total{connector="topic"')
    ]
    assert delivered and float(delivered[0].rsplit(" ", 1)[1]) >= 1


def test_a_plain_avro_consumer_decodes_the_subscriber_topic(granted: Bus, tmp_path: Path) -> None:
    """What the engine writes decodes with stock confluent-kafka tools and the registry URL."""
    licence = DemoData(seed=11).business_licence()
    with Publisher("market_regulation", system="e2e-test", settings=granted.settings) as p:
        event_id = p.publish_sync("business_licence", Op.CREATE, after=licence).event_id

    with engine(granted, tmp_path, f"plain-{uuid.uuid4().hex[:8]}"):
        found = read_events(granted.settings, TAX_TOPIC, {event_id}, 90)

    assert event_id in found, f"event {event_id} never reached {TAX_TOPIC}"
    key, event = found[event_id]
    assert key == licence["credit_code"].encode()
    assert event["after"]["name"] == licence["name"]
    assert "legal_representative_id" not in event["after"]
