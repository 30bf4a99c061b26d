"""``xbus provision`` on the secured bus: it applies the demo file, a second run finds nothing
to do, what the file drops is removed (only in provisioning's namespaces), no password is
printed, and the engine runs and delivers under the user the file gives it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.conftest import Bus
from tests.support.checkout import ROOT
from tests.support.components import component, wait_for
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.settings import BusSettings
from xbus.deploy.provisioning.passwords import password_path
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher

pytestmark = pytest.mark.broker

DEMO = ROOT / "bus.yaml"


def _secured(bus: Bus) -> BusSettings:
    if not bus.settings.sasl_mechanism:
        pytest.skip("the bus under test is not secured")
    return bus.settings


def _provision(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xbus.cli", "provision", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _users(settings: BusSettings) -> set[str]:
    admin = AdminClient(settings.kafka_config())
    return set(admin.describe_user_scram_credentials().result(30))  # type: ignore[union-attr]


def _as(settings: BusSettings, user: str) -> BusSettings:
    return settings.model_copy(
        update={
            "sasl_username": user,
            "sasl_password": None,
            "sasl_password_file": password_path(settings.secrets_dir, user),
        }
    )


def test_provision_applies_the_file_and_a_second_run_finds_nothing(
    registered: Bus, tmp_path: Path
) -> None:
    settings = _secured(registered)
    applied = _provision("--file", str(DEMO))
    assert applied.returncode == 0, applied.stderr
    again = _provision("--plan", "--file", str(DEMO))
    assert again.returncode == 0, again.stderr
    assert "Nothing to change" in again.stdout

    assert {"department.health", "subscriber.tax_bureau", "service.engine"} <= _users(settings)
    kept = password_path(settings.secrets_dir, "department.health")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    passwords = [p.read_text().strip() for p in kept.parent.glob("*.password")]
    for output in (applied.stdout, applied.stderr, again.stdout, again.stderr):
        assert not [p for p in passwords if p in output]


def test_what_the_file_drops_is_removed_and_nothing_outside_its_namespaces(
    registered: Bus, tmp_path: Path
) -> None:
    settings = _secured(registered)
    assert _provision("--file", str(DEMO)).returncode == 0
    before = _users(settings)
    smaller = tmp_path / "bus.yaml"
    smaller.write_text(DEMO.read_text().replace("  open_data: {}\n", ""))
    # The demo grants name open_data; here the office has revoked them.
    no_grants = {"XBUS_GRANTS_DIR": str(tmp_path / "grants")}

    plan = _provision("--plan", "--file", str(smaller), env=no_grants)
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if "│" in line]
    assert any("remove" in line and "subscriber.open_data" in line for line in lines)
    assert not [line for line in lines if "create" in line or "add" in line]

    assert _provision("--file", str(smaller), env=no_grants).returncode == 0
    after = _users(settings)
    assert before - after == {"subscriber.open_data"}
    assert {"admin", "registry"} <= after
    assert not password_path(settings.secrets_dir, "subscriber.open_data").exists()

    # Back as the demo has it, for the tests that follow; a new password was made.
    assert _provision("--file", str(DEMO)).returncode == 0
    assert "subscriber.open_data" in _users(settings)


def test_rotating_a_password_keeps_the_user_working_with_the_new_one(registered: Bus) -> None:
    settings = _secured(registered)
    assert _provision("--file", str(DEMO)).returncode == 0
    kept = password_path(settings.secrets_dir, "department.civil_affairs")
    old = kept.read_text()
    rotated = _provision("--file", str(DEMO), "--rotate", "department.civil_affairs")
    assert rotated.returncode == 0, rotated.stderr
    assert kept.read_text() != old
    admin = AdminClient(_as(settings, "department.civil_affairs").kafka_config())
    assert "gov.civil_affairs.marriage_registration" in admin.list_topics(timeout=10).topics


def test_engine_and_connector_run_and_deliver_under_their_own_users(
    granted: Bus, tmp_path: Path
) -> None:
    settings = _secured(granted)
    assert _provision("--file", str(DEMO)).returncode == 0
    registry = settings.secrets_dir / "registry"
    engine_env = {
        "XBUS_SASL_USERNAME": "service.engine",
        "XBUS_SASL_PASSWORD_FILE": str(password_path(settings.secrets_dir, "service.engine")),
        "XBUS_SCHEMA_REGISTRY_USERNAME": "engine",
        "XBUS_SCHEMA_REGISTRY_PASSWORD_FILE": str(registry / "engine.password"),
    }
    department = _as(settings, "department.market_regulation")
    subscriber = _as(settings, "subscriber.tax_bureau").model_copy(
        update={
            "schema_registry_username": "reader",
            "schema_registry_password": None,
            "schema_registry_password_file": registry / "reader.password",
        }
    )
    dataset = Catalog.load(settings.schemas_dir).get("market_regulation", "business_licence")
    topic = "deliver.tax_bureau.business_licence"
    connector_env = {
        **engine_env,
        "XBUS_SASL_USERNAME": "service.connectors",
        "XBUS_SASL_PASSWORD_FILE": str(password_path(settings.secrets_dir, "service.connectors")),
        "XBUS_SCHEMA_REGISTRY_USERNAME": "reader",
        "XBUS_SCHEMA_REGISTRY_PASSWORD_FILE": str(registry / "reader.password"),
    }
    out = tmp_path / "out"
    with (
        component(
            granted,
            tmp_path,
            "engine",
            "engine",
            "--metrics-port",
            "0",
            "--loglevel",
            "info",
            env=engine_env,
        ) as process,
        component(
            granted,
            tmp_path,
            "connector",
            "connector",
            "file",
            "--subscriber",
            "tax_bureau",
            "--dir",
            str(out),
            "--metrics-port",
            "0",
            env=connector_env,
        ) as connector,
    ):
        with Publisher("market_regulation", system="provision-test", settings=department) as p:
            receipt = p.publish(
                "business_licence", Op.CREATE, after=DemoData(seed=7).record(dataset)
            ).result(30)
        consumer = Consumer(subscriber.consumer_config(f"tax_bureau.test-{uuid.uuid4().hex}"))
        decode = AvroDeserializer(SchemaRegistryClient(subscriber.registry_config()))
        consumer.subscribe([topic])
        found = False
        deadline = time.monotonic() + 120
        try:
            while not found and time.monotonic() < deadline and process.poll() is None:
                for message in consumer.consume(100, timeout=0.5):
                    if message.error() or message.value() is None:
                        continue
                    event = decode(message.value(), SerializationContext(topic, MessageField.VALUE))
                    found |= str(event["event_id"]) == receipt.event_id
        finally:
            consumer.close()
        assert process.poll() is None, "the engine stopped"
        delivered = out / "tax_bureau" / "business_licence.jsonl"
        wait_for(
            lambda: delivered.exists() and receipt.event_id in delivered.read_text(),
            60,
            "the file connector, as service.connectors, to write the event",
        )
        assert connector.poll() is None, "the connector stopped"
    log = (tmp_path / "engine.log").read_text(errors="replace")
    assert found, log[-3000:]
    for name in ("engine", "connector"):
        assert "AUTHORIZATION_FAILED" not in (tmp_path / f"{name}.log").read_text(errors="replace")
