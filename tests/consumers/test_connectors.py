"""The webhook and file connectors as real processes, against the real broker and registry,
a real HTTP endpoint and real files."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Bus
from tests.support.components import component, metrics_port, wait_for, webhook_connector
from tests.support.delivery_feed import DeliveryFeed, licence
from tests.support.webhook_receiver import webhook_receiver
from xbus.consumers.delivery import message_headers
from xbus.core.envelope import Op
from xbus.core.topics import subscriber_dead_letter_topic

pytestmark = pytest.mark.broker


def _subscriber() -> str:
    return f"sub_{uuid.uuid4().hex[:8]}"


def _dead_letters(bus: Bus, subscriber: str, count: int) -> list[dict[str, bytes]]:
    consumer = Consumer(
        bus.settings.consumer_config(
            f"dlq-reader-{uuid.uuid4()}", **{"auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([subscriber_dead_letter_topic(subscriber)])
    found: list[dict[str, bytes]] = []
    try:

        def more() -> bool:
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    found.append(dict(message_headers(m)) | {"value": m.value() or b""})
            return len(found) >= count

        wait_for(more, 60, f"{count} dead letters of {subscriber}")
    finally:
        consumer.close()
    return found


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _metrics(port: int, wanted: str) -> Samples | None:
    """The connector's /metrics samples by (name, labels) once ``wanted`` appears in it."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    if wanted not in text:
        return None
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _caught_up(port: int) -> Samples | None:
    """The connector's samples once it reports lag on its partitions, all of it 0."""
    samples = _metrics(port, "xbus_connector_lag_events{")
    if samples is None:
        return None
    lag = [v for (name, _), v in samples.items() if name == "xbus_connector_lag_events"]
    return samples if len(lag) == 3 and sum(lag) == 0 else None


def _sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_webhook_that_fails_for_a_while_gets_every_event_once_signed(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber, secret = _subscriber(), b"s3cret-of-the-subscriber-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(secret)
    port = metrics_port()
    with webhook_receiver(secret) as receiver:
        receiver.fail_with = 500
        for n in range(300):
            feed.send(f"k{n % 40}", Op.CREATE if n < 40 else Op.UPDATE, licence(n % 40, n))
        feed.flush()
        with component(
            bus,
            tmp_path,
            "webhook",
            "connector",
            "webhook",
            "--subscriber",
            subscriber,
            "--url",
            receiver.url,
            "--secret-file",
            str(secret_file),
            "--metrics-port",
            str(port),
        ):
            # Up to --concurrency requests fail per attempt: 20 failures are several attempts.
            wait_for(lambda: receiver.failed_requests >= 20, 60, "the connector to retry")
            assert not receiver.processed, "nothing is delivered while the endpoint fails"
            receiver.fail_with = None
            wait_for(lambda: len(receiver.processed) >= 300, 120, "every event to arrive")
            # More events after the recovery flow straight through.
            for n in range(300, 350):
                feed.send(f"k{n % 40}", Op.UPDATE, licence(n % 40, n))
            feed.flush()
            wait_for(lambda: len(receiver.processed) >= 350, 60, "the later events")
            # Lag is sampled about once a second: once caught up, it reads 0 on every partition.
            metrics = wait_for(lambda: _caught_up(port), 30, "the lag gauges to read 0")
    who = {"subscriber": subscriber, "connector": "webhook"}
    assert _sample(metrics, "xbus_events_delivered_total", dataset="business_licence", **who) == 350
    assert _sample(metrics, "xbus_connector_failures_total", reason="http_500", **who) >= 3
    assert _sample(metrics, "xbus_connector_retries_total", **who) >= 3
    assert _sample(metrics, "xbus_end_to_end_latency_seconds_count", **who) == 350
    assert _sample(metrics, "xbus_connector_paused", **who) == 0
    sent_ids = [e["event_id"] for e in feed.sent]
    assert set(receiver.processed) == set(sent_ids)
    assert receiver.bad_signatures == 0
    # Each key's events reached the endpoint in the order they were published.
    by_key: dict[str, list[str]] = {}
    for e in feed.sent:
        by_key.setdefault(e["key"], []).append(e["event_id"])
    for key, ids in by_key.items():
        times = [receiver.arrival_times[i] for i in ids]
        assert times == sorted(times), f"events of {key} arrived out of order"
    assert receiver.processed[sent_ids[0]]["after"]["registered_capital"] == str(
        feed.sent[0]["after"]["registered_capital"]
    )


def test_a_webhook_429_is_retried_and_a_422_goes_to_the_dead_letters(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber, secret = _subscriber(), b"another-secret-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    with webhook_receiver(secret) as receiver:
        receiver.fail_with, receiver.retry_after = 429, "1"
        events = [feed.send(f"k{n}", Op.CREATE, licence(n)) for n in range(20)]
        receiver.refuse_event_ids = {events[7]["event_id"]}
        feed.send_raw("garbage", b"not an avro record")
        feed.flush()
        with webhook_connector(
            bus, tmp_path, "webhook", subscriber, receiver.url, secret, "--events-per-request", "1"
        ):
            wait_for(lambda: receiver.failed_requests >= 2, 30, "a retry after the 429")
            receiver.fail_with = None
            wait_for(lambda: len(receiver.processed) >= 19, 60, "the other events")
            letters = _dead_letters(bus, subscriber, 2)
    reasons = sorted(letter["xbus-dlq-reason"].decode() for letter in letters)
    assert reasons == ["http_422", "not_wire_format"]
    refused = next(x for x in letters if x["xbus-dlq-reason"] == b"http_422")
    assert refused["xbus-event-id"] == events[7]["event_id"].encode()
    assert refused["xbus-dlq-topic"] == feed.topic.encode()
    assert events[7]["event_id"] not in receiver.processed
    assert len(receiver.processed) == 19


def test_batched_webhook_requests_carry_every_event(bus: Bus, tmp_path: Path) -> None:
    subscriber, secret = _subscriber(), b"batch-secret-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    with webhook_receiver(secret) as receiver:
        feed.create_licences(500)
        with webhook_connector(
            bus,
            tmp_path,
            "webhook",
            subscriber,
            receiver.url,
            secret,
            "--events-per-request",
            "100",
        ):
            wait_for(lambda: len(receiver.processed) >= 500, 60, "every event")
    assert set(receiver.processed) == {e["event_id"] for e in feed.sent}


def test_the_file_connector_rotates_and_keeps_every_event(bus: Bus, tmp_path: Path) -> None:
    subscriber = _subscriber()
    feed = DeliveryFeed(bus.settings, subscriber)
    out = tmp_path / "out"
    feed.create_licences(2000)

    def lines() -> list[dict[str, object]]:
        found = []
        for path in sorted((out / subscriber).glob("business_licence*.jsonl")):
            found += [json.loads(line) for line in path.read_text().splitlines()]
        return found

    with component(
        bus,
        tmp_path,
        "file",
        "connector",
        "file",
        "--subscriber",
        subscriber,
        "--dir",
        str(out),
        "--rotate-mb",
        "0.1",
        "--metrics-port",
        "0",
    ):
        wait_for(lambda: len(lines()) >= 2000, 60, "every event in the files")
    files = list((out / subscriber).glob("business_licence*.jsonl"))
    assert len(files) >= 3, "0.1 MB files rotate several times for 2000 events"
    assert all(f.stat().st_size < 0.1 * 1024 * 1024 + 64 * 1024 for f in files)
    assert sorted(str(e["event_id"]) for e in lines()) == sorted(e["event_id"] for e in feed.sent)


def test_sigterm_while_the_endpoint_is_down_stops_promptly_and_loses_nothing(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber, secret = _subscriber(), b"term-secret-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    feed.create_licences(100)
    with webhook_receiver(secret) as receiver:
        receiver.fail_with = 503
        with webhook_connector(bus, tmp_path, "first", subscriber, receiver.url, secret) as first:
            wait_for(lambda: receiver.failed_requests >= 2, 30, "the endpoint to be tried")
            first.terminate()
            assert first.wait(15) == 0, "SIGTERM ends a connector cleanly even mid-retry"
        receiver.fail_with = None
        with webhook_connector(bus, tmp_path, "second", subscriber, receiver.url, secret):
            wait_for(lambda: len(receiver.processed) >= 100, 60, "every event after the restart")
    assert set(receiver.processed) == {e["event_id"] for e in feed.sent}


def test_a_rebalance_while_the_endpoint_is_down_leaves_nothing_held(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber, secret = _subscriber(), b"rebalance-secret-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    feed.create_licences(300)
    with webhook_receiver(secret) as receiver:
        receiver.fail_with = 503
        url, group = receiver.url, ("--group", f"g-{subscriber}")
        with webhook_connector(bus, tmp_path, "first", subscriber, url, secret, *group):
            wait_for(lambda: receiver.failed_requests >= 2, 30, "the endpoint to be tried")
            before = receiver.failed_requests
            with webhook_connector(bus, tmp_path, "second", subscriber, url, secret, *group):
                # The second member's arrival moves partitions while the first is retrying;
                # both go on failing for several attempts before the endpoint recovers.
                wait_for(lambda: receiver.failed_requests >= before + 40, 90, "both members to try")
                receiver.fail_with = None
                wait_for(lambda: len(receiver.processed) >= 300, 90, "every event")
    assert set(receiver.processed) == {e["event_id"] for e in feed.sent}


def test_a_refused_request_before_an_outage_still_reaches_the_dead_letters(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber, secret = _subscriber(), b"refuse-then-fail-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber, partitions=1)
    events = feed.create_licences(100)
    with webhook_receiver(secret) as receiver:
        receiver.refuse_event_ids = {events[25]["event_id"]}
        receiver.fail_after_refusal = 3
        with webhook_connector(
            bus, tmp_path, "webhook", subscriber, receiver.url, secret, "--events-per-request", "10"
        ):
            wait_for(lambda: len(receiver.processed) >= 90, 60, "the accepted events")
            letters = _dead_letters(bus, subscriber, 10)
    assert receiver.failed_requests == 3
    refused = {e["event_id"] for e in events[20:30]}
    assert {x["xbus-event-id"].decode() for x in letters} == refused
    assert set(receiver.processed) == {e["event_id"] for e in events} - refused
