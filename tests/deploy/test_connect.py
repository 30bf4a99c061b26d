"""The stack's Kafka Connect worker (``xbus stack exec --cdc``): its REST API wants the
office's credentials and listens on loopback only, Debezium's PostgreSQL connector is among
its plugins, its internal topics exist, its Kafka user may not write the departments' topics,
a connector configuration names its database password by reference (the worker resolves it
from the secrets folder, and from nowhere else), and ``xbus stack connect kill|start`` from
another shell brings it down and back.

They share the stack's one worker: the kill-and-start test comes last, and leaves it running.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from tests.conftest import Bus
from tests.support.components import run_xbus
from xbus.core.secret_files import write_private
from xbus.core.settings import BusSettings
from xbus.core.topics import source_topic
from xbus.deploy.connect import CONFIGS_TOPIC, OFFSETS_TOPIC, POSTGRES_CONNECTOR, STATUS_TOPIC
from xbus.deploy.provisioning.access import CONNECT_USER
from xbus.deploy.provisioning.passwords import password_path

pytestmark = pytest.mark.broker

VALIDATE = f"/connector-plugins/{POSTGRES_CONNECTOR.rsplit('.', 1)[1]}/config/validate"


@dataclass(frozen=True)
class Worker:
    """The worker the stack runs, as ``xbus stack exec --cdc`` tells its command."""

    url: str
    auth: tuple[str, str] | None
    secrets_folder: Path
    env: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", auth=self.auth, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def worker(bus: Bus) -> Worker:
    url = os.environ.get("XBUS_CONNECT_URL")
    if not url or not os.environ.get("XBUS_STACK_DATA_DIR"):
        reason = "no Kafka Connect worker: run under xbus stack exec --cdc"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the tests need a Kafka Connect worker: {reason}")
        pytest.skip(reason)
    password_file = os.environ.get("XBUS_CONNECT_PASSWORD_FILE")
    auth = (
        (os.environ["XBUS_CONNECT_USERNAME"], Path(password_file).read_text().strip())
        if password_file
        else None
    )
    return Worker(url, auth, Path(os.environ["XBUS_CDC_SECRETS_DIR"]), os.environ.copy())


def _secured(worker: Worker) -> tuple[str, str]:
    if worker.auth is None:
        pytest.skip("the stack under test is not secured")
    return worker.auth


def _listening_hosts(port: int) -> set[str]:
    """The addresses sockets listen on at ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def test_the_rest_api_wants_the_office_and_listens_on_loopback_only(worker: Worker) -> None:
    user, password = _secured(worker)
    url = f"{worker.url}/connectors"

    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, password + "x"), timeout=10).status_code == 401
    assert httpx.get(url, auth=("nobody", password), timeout=10).status_code == 401
    assert httpx.post(url, json={"name": "x", "config": {}}, timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, password), timeout=10).status_code == 200
    # The workers' own calls skip the basic auth; the session key's signature guards them.
    tasks = httpx.post(f"{url}/anything/tasks", json=[], timeout=10)
    assert tasks.status_code in (400, 403), tasks.text

    port = int(worker.url.rsplit(":", 1)[1])
    assert _listening_hosts(port) <= {"127.0.0.1", "::ffff:127.0.0.1"}, _listening_hosts(port)
    assert _listening_hosts(port)


def test_debezium_postgresql_is_among_the_plugins(worker: Worker) -> None:
    plugins = worker.get("/connector-plugins").json()
    assert POSTGRES_CONNECTOR in {p["class"] for p in plugins}


def test_the_internal_topics_exist(bus: Bus, worker: Worker) -> None:
    topics = AdminClient(bus.settings.kafka_config()).list_topics(timeout=10).topics
    assert {CONFIGS_TOPIC, OFFSETS_TOPIC, STATUS_TOPIC} <= set(topics)
    assert len(topics[CONFIGS_TOPIC].partitions) == 1  # Connect wants its configs in order


def _as_connect(settings: BusSettings) -> BusSettings:
    return settings.model_copy(
        update={
            "sasl_username": CONNECT_USER,
            "sasl_password": None,
            "sasl_password_file": password_path(settings.secrets_dir, CONNECT_USER),
        }
    )


def test_the_workers_kafka_user_may_not_write_a_departments_topic(bus: Bus, worker: Worker) -> None:
    _secured(worker)
    connect = _as_connect(bus.settings)
    # Its login works: it sees its own topics.
    assert CONFIGS_TOPIC in AdminClient(connect.kafka_config()).list_topics(timeout=10).topics
    producer = Producer(connect.producer_config(**{"message.timeout.ms": 10000}))
    got: list[KafkaError | None] = []
    producer.produce(
        source_topic("market_regulation", "business_licence"),
        b"{}",
        on_delivery=lambda error, _: got.append(error),
    )
    producer.flush(15)
    assert [e.code() if e else None for e in got] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def _database(dsn: str) -> tuple[str, str, str, str]:
    """host, port, user, database of ``dsn`` (postgresql://user@host:port/database)."""
    rest = dsn.split("://", 1)[1]
    user, rest = rest.split("@", 1)
    address, database = rest.split("/", 1)
    host, port = address.rsplit(":", 1)
    return host, port, user, database


def _password_of(dsn: str) -> str:
    """The password libpq finds for ``dsn`` in the file PGPASSFILE names."""
    host, port, user, database = _database(dsn)
    for line in Path(os.environ["PGPASSFILE"]).read_text().splitlines():
        fields = line.split(":")
        if fields[:4] in ([host, port, database, user], [host, port, "*", user]):
            return fields[4]
    raise AssertionError(f"no password for {dsn} in $PGPASSFILE")


def _validate(worker: Worker, dsn: str, user: str, password: str) -> str:
    """What the worker says of a PostgreSQL connector's configuration: "" if it reached the
    database, else the errors."""
    host, port, _, database = _database(dsn)
    config = {
        "connector.class": POSTGRES_CONNECTOR,
        "name": "probe",
        "topic.prefix": "cdc.probe",
        "plugin.name": "pgoutput",
        "database.hostname": host,
        "database.port": port,
        "database.user": user,
        "database.password": password,
        "database.dbname": database,
    }
    answer = httpx.put(f"{worker.url}{VALIDATE}", json=config, auth=worker.auth, timeout=60)
    assert answer.status_code == 200, answer.text
    return " ".join(e for c in answer.json()["configs"] for e in c["value"]["errors"])


def test_a_connector_names_its_password_by_reference_and_only_in_the_secrets_folder(
    worker: Worker, postgres_dsn: str
) -> None:
    _secured(worker)
    user = _database(postgres_dsn)[2]
    name = f"probe-{uuid.uuid4().hex[:8]}"
    # Read whole by the worker: no trailing newline.
    write_private(worker.secrets_folder / f"{name}.password", _password_of(postgres_dsn))
    write_private(worker.secrets_folder / f"{name}.wrong", "not-the-password")
    outside = Path(os.environ["XBUS_SECRETS_DIR"]) / "postgres"
    write_private(outside / f"{name}.password", _password_of(postgres_dsn))
    try:
        reference = f"${{dir:{worker.secrets_folder}:{name}.password}}"
        assert _validate(worker, postgres_dsn, user, reference) == ""
        wrong = f"${{dir:{worker.secrets_folder}:{name}.wrong}}"
        assert "password authentication failed" in _validate(worker, postgres_dsn, user, wrong)
        # A folder outside the secrets folder, by name or through "..", is never read.
        for folder in (outside, worker.secrets_folder / ".." / "postgres"):
            refused = f"${{dir:{folder}:{name}.password}}"
            said = _validate(worker, postgres_dsn, user, refused)
            assert "password authentication failed" in said
    finally:
        for path in (
            worker.secrets_folder / f"{name}.password",
            worker.secrets_folder / f"{name}.wrong",
            outside / f"{name}.password",
        ):
            path.unlink(missing_ok=True)


def test_kill_and_start_from_another_shell_bring_the_worker_back(worker: Worker) -> None:
    killed = run_xbus(worker.env, "stack", "connect", "kill", timeout=60)
    assert killed.returncode == 0, killed.stderr
    with pytest.raises(httpx.TransportError):
        worker.get("/connectors")

    started = run_xbus(worker.env, "stack", "connect", "start", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    assert worker.get("/connectors").status_code == 200
    assert POSTGRES_CONNECTOR in {p["class"] for p in worker.get("/connector-plugins").json()}
