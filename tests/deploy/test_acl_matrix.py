"""The ACL matrix on the secured bus: after ``xbus provision`` of the demo file, every
principal tries what it may and what it may not, and Kafka itself allows or refuses it.

One client of each kind per principal, short timeouts; the matrix's size and run time are
printed (``-s``) for the record."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import Bus
from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.topics import AUDIT_TOPIC, CONNECT_PREFIX, DEAD_LETTER_TOPIC, GRANTS_TOPIC
from xbus.deploy.provisioning.access import principals
from xbus.deploy.provisioning.bus_file import load_bus_file
from xbus.deploy.provisioning.passwords import password_path

pytestmark = pytest.mark.broker

DEMO = ROOT / "bus.yaml"
REFUSED = "TOPIC_AUTHORIZATION_FAILED"
# A user that may write no topic at all does not even get an idempotent producer id: a write
# to a topic it may describe fails with Kafka's cluster refusal, one to a topic it may not
# describe with the topic refusal, whichever Kafka answers first.
NO_WRITE = (REFUSED, "CLUSTER_AUTHORIZATION_FAILED")
# A probe topic under each department's and subscriber's prefix: no dataset has its name
# (upper case), so no engine or connector of another test reads what the matrix writes.
PROBE = "ACL-probe"
# Under the change data capture prefix, with a record for the bridge to read.
CDC_PROBE = f"cdc.health.{PROBE}"


@dataclass
class Matrix:
    """Each principal's tries: (what, expected, got)."""

    tries: list[tuple[str, str, tuple[str, ...], str]] = field(default_factory=list)

    def record(self, who: str, what: str, expected: str | tuple[str, ...], got: str) -> None:
        self.tries.append((who, what, (expected,) if isinstance(expected, str) else expected, got))

    def wrong(self) -> list[str]:
        return [
            f"{w}: {what}: expected {' or '.join(e)}, got {g}"
            for w, what, e, g in self.tries
            if g not in e
        ]


def _settings_of(bus: Bus, user: str) -> object:
    return bus.settings.model_copy(
        update={
            "sasl_username": user,
            "sasl_password": None,
            "sasl_password_file": password_path(bus.settings.secrets_dir, user),
        }
    )


def _quiet() -> object:
    import logging

    quiet = logging.getLogger(f"matrix-{uuid.uuid4().hex}")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def _produce(settings: object, topics: list[str]) -> dict[str, str]:
    """Try one record to each topic with one producer; ``{topic: "ok" | error name}``."""
    producer = Producer(
        settings.producer_config(  # type: ignore[attr-defined]
            **{"message.timeout.ms": 10000, "logger": _quiet()}
        )
    )
    got: dict[str, str] = {}

    def delivered(error: KafkaError | None, message: object) -> None:
        if error is None or error.code() != KafkaError._PURGE_QUEUE:  # purged: see below
            got[message.topic()] = error.name() if error else "ok"  # type: ignore[attr-defined]

    try:
        for topic in topics:
            producer.produce(topic, b"acl-probe", key=b"acl-probe", on_delivery=delivered)
        producer.flush(15)
    except KafkaException as exc:  # a fatal refusal ends the producer
        return {t: got.get(t, exc.args[0].name()) for t in topics}
    return {t: got.get(t, "no answer within 15s") for t in topics}


def _subscribe(settings: object, group: str, topics: list[str], want: int = 0) -> dict[str, str]:
    """Subscribe ``group`` to ``topics``; ``{topic: "ok" | error name}``: "ok" once a record
    of the topic arrives, else the refusal Kafka sends (a group refusal is given to all)."""
    consumer = Consumer(
        settings.consumer_config(  # type: ignore[attr-defined]
            group, **{"logger": _quiet(), "topic.metadata.refresh.interval.ms": 1000}
        )
    )
    got: dict[str, str] = {}
    consumer.subscribe(topics)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and len(got) < len(topics):
            for message in consumer.consume(100, timeout=0.3):
                error = message.error()
                if error is None:
                    got.setdefault(message.topic() or "", "ok")
                elif error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    return dict.fromkeys(topics, error.name())
                elif message.topic() and error.code() != KafkaError._PARTITION_EOF:
                    got.setdefault(message.topic() or "", error.name())
    finally:
        consumer.close()
    return {t: got.get(t, "nothing within 15s") for t in topics}


def _admin_tries(settings: object, create: str, delete: str) -> tuple[str, str]:
    admin = AdminClient(settings.kafka_config(logger=_quiet()))  # type: ignore[attr-defined]
    results = []
    for futures in (
        admin.create_topics([NewTopic(create, 1, 1)], request_timeout=10),
        admin.delete_topics([delete], request_timeout=10),
    ):
        (future,) = futures.values()
        try:
            future.result(15)
            results.append("ok")
        except KafkaException as exc:
            results.append(exc.args[0].name())
    return results[0], results[1]


@pytest.fixture(scope="module")
def provisioned(registered: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """The bus provisioned from the demo file (as the office), and a probe topic under every
    department's and subscriber's prefix, those of subscribers with a record."""
    if not registered.settings.sasl_mechanism:
        pytest.skip("the bus under test is not secured")
    done = subprocess.run(
        [sys.executable, "-m", "xbus.cli", "provision", "--file", str(DEMO)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    catalog = Catalog.load(registered.settings.schemas_dir)
    bus = load_bus_file(DEMO, catalog, None)
    subscribers = sorted(bus.subscribers)
    admin = AdminClient(registered.settings.kafka_config())
    probes = [*(f"deliver.{s}.{PROBE}" for s in subscribers), CDC_PROBE]
    made = [*probes, *(f"gov.{d}.{PROBE}" for d in bus.departments)]
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in made]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    assert set(_produce(registered.settings, probes).values()) == {"ok"}
    yield registered
    for future in admin.delete_topics(made).values():
        future.result(30)
    # What the Connect worker's user made in the test, if it did.
    for future in admin.delete_topics([f"{CONNECT_PREFIX}{PROBE}"]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def test_every_principal_may_do_what_it_needs_and_nothing_else(provisioned: Bus) -> None:
    started = time.monotonic()
    catalog = Catalog.load(provisioned.settings.schemas_dir)
    bus = load_bus_file(DEMO, catalog, None)
    users = [p.user for p in principals(bus, DEMO.parent)]
    sources = {d.department: d.topic for d in catalog}  # one topic per department is enough
    every_source = sorted(d.topic for d in catalog)
    subscribers = sorted(bus.subscribers)
    matrix = Matrix()

    for department in sorted(bus.departments):
        who = f"department.{department}"
        own = [d.topic for d in catalog if d.department == department]
        others = [t for t in every_source if t not in own]
        mine = f"gov.{department}.{PROBE}"
        got = _produce(_settings_of(provisioned, who), [mine, *others, GRANTS_TOPIC])
        matrix.record(who, f"write {mine}", "ok", got[mine])
        for topic in [*others, GRANTS_TOPIC]:
            matrix.record(who, f"write {topic}", REFUSED, got[topic])

    for subscriber in subscribers:
        who = f"subscriber.{subscriber}"
        settings = _settings_of(provisioned, who)
        own = f"deliver.{subscriber}.{PROBE}"
        other = next(f"deliver.{s}.{PROBE}" for s in subscribers if s != subscriber)
        forbidden = [*every_source, other, AUDIT_TOPIC, DEAD_LETTER_TOPIC, GRANTS_TOPIC]
        got = _subscribe(settings, f"{subscriber}.matrix", [own])
        matrix.record(who, f"read {own}", "ok", got[own])
        got = _subscribe(settings, f"{subscriber}.matrix", forbidden)
        for topic in forbidden:
            matrix.record(who, f"read {topic}", REFUSED, got[topic])
        theirs = next(s for s in subscribers if s != subscriber)
        got = _subscribe(settings, f"{theirs}.loader", [own])
        matrix.record(who, f"join group {theirs}.loader", "GROUP_AUTHORIZATION_FAILED", got[own])
        created, deleted = _admin_tries(settings, f"deliver.{subscriber}.made_by_me", own)
        matrix.record(who, "create a topic", REFUSED, created)
        matrix.record(who, f"delete {own}", REFUSED, deleted)
        got = _produce(settings, [own, GRANTS_TOPIC])
        matrix.record(who, f"write {own}", NO_WRITE, got[own])
        matrix.record(who, f"write {GRANTS_TOPIC}", NO_WRITE, got[GRANTS_TOPIC])

    gateway = _settings_of(provisioned, "service.gateway")
    probe = f"gov.health.{PROBE}"
    got = _produce(gateway, [probe, GRANTS_TOPIC])
    matrix.record("service.gateway", f"write {probe}", "ok", got[probe])
    matrix.record("service.gateway", f"write {GRANTS_TOPIC}", REFUSED, got[GRANTS_TOPIC])
    got = _subscribe(gateway, "xbus-gateway", [sources["health"]])
    matrix.record(
        "service.gateway",
        f"read {sources['health']}",
        "GROUP_AUTHORIZATION_FAILED",
        got[sources["health"]],
    )

    engine = _settings_of(provisioned, "service.engine")
    got = _produce(engine, [sources["health"], GRANTS_TOPIC])
    matrix.record("service.engine", f"write {sources['health']}", REFUSED, got[sources["health"]])
    matrix.record("service.engine", f"write {GRANTS_TOPIC}", REFUSED, got[GRANTS_TOPIC])
    got = _subscribe(engine, "xbus-policy-matrix", [DEAD_LETTER_TOPIC])
    matrix.record("service.engine", f"read {DEAD_LETTER_TOPIC}", REFUSED, got[DEAD_LETTER_TOPIC])
    for service in ("service.connectors", "service.sse"):
        settings = _settings_of(provisioned, service)
        got = _produce(settings, [sources["health"], GRANTS_TOPIC, AUDIT_TOPIC])
        refusal = REFUSED if service == "service.connectors" else NO_WRITE
        for topic, result in got.items():
            matrix.record(service, f"write {topic}", refusal, result)
        group = "xbus-webhook-matrix" if service == "service.connectors" else "xbus-sse-matrix"
        got = _subscribe(settings, group, [AUDIT_TOPIC, DEAD_LETTER_TOPIC])
        for topic, result in got.items():
            matrix.record(service, f"read {topic}", REFUSED, result)

    # The Kafka Connect worker writes Debezium's cdc.* topics and its own, nothing else.
    connect = _settings_of(provisioned, "service.connect")
    internal = f"{CONNECT_PREFIX}{PROBE}"
    got = _produce(connect, [CDC_PROBE, sources["health"], GRANTS_TOPIC, AUDIT_TOPIC])
    matrix.record("service.connect", f"write {CDC_PROBE}", "ok", got[CDC_PROBE])
    for topic in (sources["health"], GRANTS_TOPIC, AUDIT_TOPIC):
        matrix.record("service.connect", f"write {topic}", REFUSED, got[topic])
    created, deleted = _admin_tries(connect, internal, sources["health"])
    matrix.record("service.connect", f"create {internal}", "ok", created)
    matrix.record("service.connect", f"delete {sources['health']}", REFUSED, deleted)
    got = _subscribe(connect, "xbus-connect-matrix", [sources["health"]])
    matrix.record(
        "service.connect",
        "use a group other than _xbus.connect",
        "GROUP_AUTHORIZATION_FAILED",
        got[sources["health"]],
    )
    # The bridge reads cdc.* and republishes as the department: writes gov.*, reads no more.
    bridge = _settings_of(provisioned, "service.cdc_bridge")
    got = _subscribe(bridge, "xbus-cdc-bridge-matrix", [CDC_PROBE])
    matrix.record("service.cdc_bridge", f"read {CDC_PROBE}", "ok", got[CDC_PROBE])
    forbidden = [sources["health"], f"deliver.{subscribers[0]}.{PROBE}", AUDIT_TOPIC]
    got = _subscribe(bridge, "xbus-cdc-bridge-matrix", forbidden)
    for topic in forbidden:
        matrix.record("service.cdc_bridge", f"read {topic}", REFUSED, got[topic])
    got = _produce(bridge, [probe, GRANTS_TOPIC, internal])
    matrix.record("service.cdc_bridge", f"write {probe}", "ok", got[probe])
    for topic in (GRANTS_TOPIC, internal):
        matrix.record("service.cdc_bridge", f"write {topic}", REFUSED, got[topic])

    elapsed = time.monotonic() - started
    tried = len(matrix.tries)
    print(f"\nACL matrix: {len(users)} principals, {tried} tries, {elapsed:.1f}s")
    assert not matrix.wrong(), "\n".join(matrix.wrong())
    assert {who for who, *_ in matrix.tries} == set(users)


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line the command printed, which says what went wrong."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def _cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "xbus.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )
    return done, time.monotonic() - started


def test_no_credentials_and_a_wrong_password_are_refused_in_one_clear_line(
    provisioned: Bus, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-of-this-user\n")
    anonymous, took = _cli(
        {"XBUS_SECURITY_PROTOCOL": "PLAINTEXT", "XBUS_SASL_MECHANISM": ""},
        "provision",
        "--plan",
        "--file",
        str(DEMO),
    )
    assert anonymous.returncode == 1 and took < 30
    last = _error_line(anonymous)
    assert last.startswith("error: could not reach Kafka at"), last
    assert "XBUS_SASL_USERNAME" in last

    refused, took = _cli(
        {"XBUS_SASL_USERNAME": "department.health", "XBUS_SASL_PASSWORD_FILE": str(wrong)},
        "provision",
        "--plan",
        "--file",
        str(DEMO),
    )
    assert refused.returncode == 1 and took < 30
    print(f"\nwrong password refused in {took:.1f}s")
    last = _error_line(refused)
    assert last.startswith("error: Kafka at") and "refused the login of 'department.health'" in last

    # Kafka's own refusal of a logged-in user that no ACL allows, told as such.
    denied, _ = _cli(
        {
            "XBUS_SASL_USERNAME": "subscriber.open_data",
            "XBUS_SASL_PASSWORD_FILE": str(
                password_path(provisioned.settings.secrets_dir, "subscriber.open_data")
            ),
        },
        "provision",
        "--plan",
        "--file",
        str(DEMO),
    )
    assert denied.returncode == 1
    last = _error_line(denied)
    assert last.startswith("error: ") and "AUTHORIZATION_FAILED" in last, last
    for done in (anonymous, refused, denied):
        assert "Traceback" not in done.stderr
