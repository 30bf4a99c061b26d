"""The operators' view against the real parts: the broker's JMX exporter serving the metrics
the alert rules and the dashboard read, and an alert carried through the launcher's real
Prometheus and Alertmanager to a real HTTP receiver, from pending to resolved."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Bus
from tests.support.components import wait_for, webhook_connector
from tests.support.delivery_feed import DeliveryFeed, licence
from tests.support.monitoring import monitoring_for
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.envelope import Op
from xbus.deploy.monitoring import (
    ALERT_RULES,
    ALERTMANAGER_DIR,
    LocalMonitoring,
    ScrapeTarget,
    prometheus_config,
    target_jobs,
    write_targets,
)
from xbus.deploy.process import free_port

ROOT = Path(__file__).resolve().parents[2]


def _broker_metrics_url() -> str:
    url = os.environ.get("XBUS_BROKER_METRICS_URL")
    if not url:
        message = "no XBUS_BROKER_METRICS_URL: the broker was not started by xbus's launcher"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def _samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append((sample.labels, sample.value))
    return by_name


@pytest.mark.broker
def test_the_broker_serves_what_the_alerts_read_and_its_traffic_per_topic(bus: Bus) -> None:
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    producer = Producer(bus.settings.producer_config())
    for n in range(50):
        producer.produce(topic, value=os.urandom(100), key=str(n).encode())  # incompressible
    assert producer.flush(30) == 0
    url = _broker_metrics_url()

    def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        samples = _samples(url)
        written = sum(
            v
            for labels, v in samples.get("kafka_server_brokertopicmetrics_bytesin_total", [])
            if labels.get("topic") == topic
        )
        return samples if written >= 50 * 100 else None

    samples = wait_for(counted, 30, f"the broker to count the bytes written to {topic}")
    rules = ALERT_RULES.read_text()
    for name in (
        "kafka_server_replicamanager_underreplicatedpartitions",
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "kafka_controller_kafkacontroller_activecontrollercount",
    ):
        assert name in rules
        assert name in samples, f"the broker does not export {name}, which an alert reads"
    assert samples["kafka_controller_kafkacontroller_activecontrollercount"][0][1] == 1
    assert samples["kafka_server_replicamanager_underreplicatedpartitions"][0][1] == 0
    on_disk = sum(
        v for labels, v in samples["kafka_log_log_size_bytes"] if labels["topic"] == topic
    )
    assert on_disk >= 50 * 100
    produce_requests = [
        v
        for labels, v in samples["kafka_network_requestmetrics_requests_total"]
        if labels["request"] == "Produce"
    ]
    assert sum(produce_requests) >= 1
    latencies = {
        labels["quantile"]
        for labels, _ in samples["kafka_network_requestmetrics_totaltimems"]
        if labels["request"] == "Produce"
    }
    assert latencies == {"0.5", "0.99"}


def test_the_launchers_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    """What the launcher makes of deploy/prometheus/prometheus.yml passes promtool, and its
    target files name what Prometheus will scrape."""
    config = prometheus_config(tmp_path, rules=[ALERT_RULES])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    write_targets(
        tmp_path / "targets",
        [ScrapeTarget("xbus", "127.0.0.1:9102", {"component": "engine"})],
        ["xbus", "kafka", "node", "prometheus", "alertmanager"],
    )
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "targets" / "xbus.json").read_text()) == [
        {"targets": ["127.0.0.1:9102"], "labels": {"component": "engine"}}
    ]
    assert json.loads((tmp_path / "targets" / "kafka.json").read_text()) == []


def test_the_compose_file_runs_prometheus_and_alertmanager_on_the_same_files() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = {
        service: {v.split(":")[0]: v.split(":")[1] for v in spec.get("volumes", [])}
        for service, spec in compose["services"].items()
    }
    assert mounts["prometheus"]["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["prometheus"]["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert mounts["prometheus"]["./prometheus/compose-targets"] == "/etc/prometheus/targets"
    assert (
        mounts["alertmanager"]["./alertmanager/alertmanager.yml"]
        == "/etc/alertmanager/alertmanager.yml"
    )
    # Every job prometheus.yml reads from a file has one there, naming compose services.
    folder = ROOT / "deploy" / "prometheus" / "compose-targets"
    for job in target_jobs():
        groups = json.loads((folder / f"{job}.json").read_text())
        for group in groups:
            for address in group["targets"]:
                host = address.split(":")[0]
                assert host == "localhost" or host in compose["services"], address


class _AlertReceiver:
    """Alertmanager's webhook notifications, as they arrive."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def statuses(self, alertname: str, **labels: str) -> list[str]:
        """The status (firing, resolved) of each notification about that alert, in order."""
        with self.lock:
            return [
                alert["status"]
                for n in self.notifications
                for alert in n["alerts"]
                if alert["labels"].get("alertname") == alertname
                and all(alert["labels"].get(k) == v for k, v in labels.items())
            ]


@contextmanager
def _alert_receiver() -> Iterator[_AlertReceiver]:
    receiver = _AlertReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.notifications.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def _rules_that_wait(seconds: int, folder: Path) -> Path:
    """alerts.yml with every ``for`` shortened to ``seconds`` (the expressions unchanged), so
    an alert goes pending and firing within a test's time."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{seconds}s"
    path = folder / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def _alertmanager_posting_to(url: str) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with its receiver posting to ``url`` and its
    waits cut to a second."""
    config: dict[str, Any] = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route |= {"group_wait": "1s", "group_interval": "1s"}
    (receiver,) = config["receivers"]
    receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    return config


def _prometheus_alert_state(prometheus: str, alertname: str, subscriber: str) -> str | None:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    for alert in alerts:
        labels = alert["labels"]
        if labels["alertname"] == alertname and labels.get("subscriber") == subscriber:
            return str(alert["state"])
    return None


@pytest.mark.broker
def test_a_target_down_fires_an_alert_that_reaches_the_receiver_and_resolves(
    bus: Bus, tmp_path: Path
) -> None:
    subscriber = f"sub_{uuid.uuid4().hex[:8]}"
    secret = b"the-subscriber-secret-of-at-least-32-bytes-for-hmac"
    feed = DeliveryFeed(bus.settings, subscriber)
    metrics = free_port()
    config = monitoring_for(tmp_path, rules=(_rules_that_wait(5, tmp_path),))
    paused = {"alertname": "XbusConnectorPaused", "subscriber": subscriber}
    with ExitStack() as stack:
        alerts = stack.enter_context(_alert_receiver())
        config.alertmanager = _alertmanager_posting_to(alerts.url)
        first_target = ExitStack()
        stack.callback(first_target.close)
        target = first_target.enter_context(webhook_receiver(secret))
        target_port = int(target.url.rsplit(":", 1)[1].split("/")[0])
        stack.enter_context(
            webhook_connector(
                bus,
                tmp_path,
                "webhook",
                subscriber,
                target.url,
                secret,
                "--metrics-port",
                str(metrics),
            )
        )
        monitoring = LocalMonitoring(config)
        stack.callback(monitoring.stop)
        monitoring.start([ScrapeTarget("xbus", f"127.0.0.1:{metrics}", {"component": "webhook"})])
        prometheus = config.prometheus_url
        for n in range(5):
            feed.send(f"k{n}", Op.CREATE, licence(n))
        feed.flush()
        wait_for(lambda: len(target.processed) == 5, 60, "the first events to arrive")
        assert _prometheus_alert_state(prometheus, **paused) is None

        # The subscriber's endpoint goes away; the connector pauses on its next delivery.
        first_target.close()
        for n in range(5, 10):
            feed.send(f"k{n}", Op.CREATE, licence(n))
        feed.flush()
        wait_for(
            lambda: _prometheus_alert_state(prometheus, **paused) == "pending",
            60,
            "Prometheus to see the connector paused (the alert pending)",
        )
        wait_for(
            lambda: _prometheus_alert_state(prometheus, **paused) == "firing",
            30,
            "the alert to fire once its `for` has passed",
        )
        wait_for(lambda: "firing" in alerts.statuses(**paused), 30, "Alertmanager's notice")
        assert not alerts.statuses("XbusConnectorPaused", subscriber="someone_else")

        # The endpoint returns on the same address: the connector delivers what waited,
        # the alert resolves, and Alertmanager says so.
        back = stack.enter_context(webhook_receiver(secret, port=target_port))
        wait_for(lambda: len(back.processed) == 5, 90, "the waiting events to arrive")
        wait_for(
            lambda: _prometheus_alert_state(prometheus, **paused) is None,
            30,
            "Prometheus to see the connector delivering again",
        )
        wait_for(lambda: alerts.statuses(**paused)[-1:] == ["resolved"], 30, "the resolved notice")
    assert {e["event_id"] for e in feed.sent} == {*target.processed, *back.processed}
