"""A grant's live flow, read from metric samples; the audit trail searched and verified."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from tests.console.conftest import Served, Visitor
from tests.console.test_preview import _grant_in_force
from tests.console.test_requests import _logged_in
from xbus.console.accounts import Role
from xbus.console.audit_search import AuditQuery, matches, search
from xbus.console.flow_meter import DeliveryClock, grant_flow
from xbus.core.admin import ensure_topics
from xbus.core.bus_status import Component, Reading, Sample
from xbus.core.topics import AUDIT_TOPIC
from xbus.streams.audit import AuditChains


def _reading(values: list[Sample], rates: list[Sample]) -> Reading:
    return Reading(
        taken_at=1_000.0,
        source="test",
        window="rates over 1.0 s",
        components=[Component("engine", "u", True), Component("connector", "u", False)],
        values=values,
        rates=rates,
    )


def test_a_grants_flow_counts_only_its_subscriber_and_dataset() -> None:
    mine = {"subscriber": "tax_bureau", "dataset": "business_licence"}
    values = [
        Sample("xbus_events_delivered_total", {**mine, "connector": "topic"}, 120),
        Sample("xbus_events_delivered_total", {**mine, "connector": "webhook"}, 100),
        Sample("xbus_events_delivered_total", {**mine, "connector": "file"}, 15),
        Sample(
            "xbus_events_delivered_total", {**mine, "dataset": "clinic", "connector": "file"}, 9
        ),
        Sample("xbus_events_delivered_total", {**mine, "subscriber": "x", "connector": "file"}, 7),
        Sample("xbus_events_filtered_total", mine, 30),
        Sample("xbus_events_denied_total", {**mine, "reason": "expired"}, 2),
        Sample(
            "xbus_connector_lag_events",
            {
                "subscriber": "tax_bureau",
                "connector": "webhook",
                "topic": "deliver.tax_bureau.business_licence",
                "partition": "0",
            },
            5,
        ),
        Sample(
            "xbus_connector_lag_events",
            {"subscriber": "tax_bureau", "topic": "deliver.tax_bureau.clinic", "partition": "0"},
            50,
        ),
        Sample("xbus_connector_failures_total", {"subscriber": "tax_bureau", "reason": "5xx"}, 3),
        Sample(
            "xbus_connector_oldest_undelivered_timestamp_seconds", {"subscriber": "tax_bureau"}, 990
        ),
    ]
    rates = [Sample("xbus_events_delivered_total", {**mine, "connector": "webhook"}, 4.5)]
    flow = grant_flow(_reading(values, rates), "tax_bureau", "market_regulation.business_licence")
    assert (flow.routed, flow.delivered, flow.delivered_per_second) == (120, 115, 4.5)
    assert (flow.filtered, flow.denied, flow.lag, flow.failures) == (30, 2, 5, 3)
    assert flow.oldest_waiting_seconds == 10
    assert (flow.components_up, flow.components) == (1, 2)


def test_the_last_delivery_is_when_the_count_last_grew() -> None:
    clock = DeliveryClock()
    assert clock.see(10, at=1.0) is None  # nothing to compare with yet
    assert clock.see(10, at=2.0) is None
    assert clock.see(12, at=3.0) == 3.0
    assert clock.see(12, at=4.0) == 3.0


def test_an_audit_query_keeps_only_the_decisions_asked_about() -> None:
    record = {
        "event_id": "e1",
        "department": "market_regulation",
        "dataset": "business_licence",
        "decisions": [
            {"subscriber": "tax_bureau", "decision": "delivered"},
            {"subscriber": "open_data", "decision": "filtered"},
        ],
    }
    assert matches(AuditQuery(subscriber="open_data"), record) == (
        {"subscriber": "open_data", "decision": "filtered"},
    )
    assert matches(AuditQuery(dataset="market_regulation.business_licence"), record)
    assert matches(AuditQuery(dataset="business_licence", event_id="e1"), record)
    assert matches(AuditQuery(event_id="e2"), record) is None
    assert matches(AuditQuery(subscriber="health_office"), record) is None


def _write_chain(served: Served, topic: str, tag: str, tamper: bool = False) -> str:
    chains = AuditChains()
    chain = f"gov.test_{tag}.thing/0"
    producer = Producer(served.flow.settings.producer_config())
    event_id = str(uuid.uuid4())
    for seq in range(3):
        content = {
            "event_id": event_id if seq == 1 else str(uuid.uuid4()),
            "department": f"test_{tag}",
            "dataset": "thing",
            "op": "CREATE",
            "source": {"topic": f"gov.test_{tag}.thing", "partition": 0, "offset": seq},
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "decisions": [
                {
                    "subscriber": f"watcher_{tag}",
                    "grant": f"watch-{tag}",
                    "version": 1,
                    "decision": "delivered",
                    "reason": "",
                    "masks": [],
                }
            ],
        }
        value = chains.seal(chain, content)
        if tamper and seq == 1:
            body = json.loads(value)
            body["decisions"][0]["decision"] = "filtered"
            value = json.dumps(body).encode()
        producer.produce(topic, value, chain.encode(), partition=0)
    assert producer.flush(30) == 0
    return event_id


def test_the_office_finds_an_events_decisions_and_sees_the_chains_hold(
    console_server: Served,
) -> None:
    tag = uuid.uuid4().hex[:8]
    ensure_topics(console_server.flow.settings, {AUDIT_TOPIC: 3})
    event_id = _write_chain(console_server, AUDIT_TOPIC, tag)
    office = _logged_in(console_server, Role.OFFICE)
    page = office.get(f"/audit?event_id={event_id}&window=1h")
    assert page.status_code == 200, page.text
    assert f"watcher_{tag}" in page.text and 'data-verdict="intact"' in page.text
    by_subscriber = office.get(f"/audit?subscriber=watcher_{tag}&window=1h")
    assert by_subscriber.text.count(f"watch-{tag} v1") == 3
    for other in (
        _logged_in(console_server, Role.SUBSCRIBER, f"watcher_{tag}"),
        _logged_in(console_server, Role.DEPARTMENT, "market_regulation"),
    ):
        refused = other.get(f"/audit?event_id={event_id}")
        assert refused.status_code == 403 and event_id not in refused.text
    assert _logged_in(console_server, Role.OPERATOR).get("/audit").status_code == 200


def test_a_changed_audit_record_shows_as_a_broken_chain(console_server: Served) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = f"_xbus.audit-test-{tag}"
    ensure_topics(console_server.flow.settings, {topic: 1})
    event_id = _write_chain(console_server, topic, tag, tamper=True)
    found, verdict = search(
        console_server.flow.settings,
        AuditQuery(event_id=event_id, window="1h"),
        dt.datetime.now(dt.UTC),
        topic=topic,
    )
    assert [m.event_id for m in found] == [event_id]
    assert verdict.first_break is not None and verdict.first_break.kind == "altered"
    assert verdict.first_break.offset == 1


def test_a_live_flow_streams_until_its_session_ends(console_server: Served, tmp_path: Path) -> None:
    grant_id = _grant_in_force(console_server, tmp_path)
    office = _logged_in(console_server, Role.OFFICE)
    page = office.get(f"/grants/{grant_id}/flow")
    assert f'sse-connect="/grants/{grant_id}/flow/stream"' in page.text
    started = time.monotonic()
    with office.http.stream("GET", f"/grants/{grant_id}/flow/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: flow"
        same_person = Visitor(console_server.url)
        same_person.use_session(office.session)
        assert same_person.post("/logout", {}, "/").status_code == 303
        rest = list(lines)  # returns once the server ends the stream
    assert time.monotonic() - started < 20
    assert rest.count("event: flow") <= 3
    # A subscriber sees only its own grants' flow.
    stranger = _logged_in(console_server, Role.SUBSCRIBER, "tax_bureau")
    assert stranger.get(f"/grants/{grant_id}/flow").status_code == 404
