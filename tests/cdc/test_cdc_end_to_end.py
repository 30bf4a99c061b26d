"""A department's table, captured by Debezium on Kafka Connect and bridged into its dataset,
ends in a subscriber's table exactly as the grant shows it: rows that existed before the
connector (its snapshot), then 20,000 inserts, updates and deletes through SQL, with the
Connect worker and the bridge killed (-9) and restarted mid-stream."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from psycopg import sql
from psycopg.rows import dict_row

from tests.conftest import Bus
from tests.support.components import component, engine, run_xbus, wait_for
from tests.support.department_database import DepartmentDatabase
from xbus.producers.cdc.connector import ConnectClient
from xbus.producers.cdc.demo import INSERT, TABLE, prepare_table, row
from xbus.producers.demodata import DemoData

SNAPSHOT_ROWS = 2_000
CHANGES = 20_000
SUBSCRIBER = "public_security"
GOV_TOPIC = "gov.civil_affairs.marriage_registration"
CDC_TOPIC = "cdc.civil_affairs.marriage_registration"


@pytest.fixture(scope="module", autouse=True)
def _leave_no_backlog(granted: Bus) -> Iterator[None]:
    """Afterwards, drop the records these tests put on the dataset's topics: every engine a
    later test starts reads gov.* from the start, and would first route these 22,000."""
    yield
    admin = AdminClient(granted.settings.kafka_config())
    topics = [GOV_TOPIC, CDC_TOPIC, f"deliver.{SUBSCRIBER}.marriage_registration"]
    ends = []
    consumer = Consumer(granted.settings.consumer_config(f"cdc-test-{uuid.uuid4()}"))
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in meta.partitions:
                high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                if high > 0:
                    ends.append(TopicPartition(topic, p, high))
    finally:
        consumer.close()
    if ends:
        for future in admin.delete_records(ends, request_timeout=30).values():
            future.result(60)


class Workload:
    """Inserts, updates and deletes through SQL in transactions of 1 to 40 statements, every
    registration number starting with this run's tag."""

    def __init__(self, database: DepartmentDatabase, tag: str) -> None:
        self.database = database
        self.tag = tag
        self.data = DemoData(seed=7)
        self.chance = random.Random(7)
        self.live: list[str] = []
        self.serial = 0
        self.statements = 0

    def _registration(self) -> dict[str, Any]:
        self.serial += 1
        registration = self.data.marriage_registration()
        registration["registration_no"] = f"{self.tag}-{self.serial:06d}"
        return registration

    def insert_rows(self, count: int) -> None:
        with self.database.admin() as connection, connection.transaction():
            for _ in range(count):
                registration = self._registration()
                connection.execute(INSERT, row(registration, note="窗口受理"))
                self.live.append(registration["registration_no"])

    def run(self, changes: int, progress: Callable[[int], None]) -> None:
        with self.database.admin() as connection:
            while self.statements < changes:
                size = min(self.chance.randint(1, 40), changes - self.statements)
                with connection.transaction():
                    for _ in range(size):
                        self._one(connection)
                progress(self.statements)

    def _one(self, connection: psycopg.Connection) -> None:
        draw = self.chance.random()
        if self.live and draw < 0.3:
            number = self.chance.choice(self.live)
            connection.execute(
                f"UPDATE {TABLE} SET kind = %s, party_b_household_district_code = %s "
                "WHERE registration_no = %s",
                (
                    self.chance.choice(["REISSUE", "DIVORCE"]),
                    f"3101{self.serial % 100:02d}",
                    number,
                ),
            )
        elif self.live and draw < 0.45:
            number = self.live.pop(self.chance.randrange(len(self.live)))
            connection.execute(f"DELETE FROM {TABLE} WHERE registration_no = %s", (number,))
        else:
            registration = self._registration()
            connection.execute(INSERT, row(registration))
            self.live.append(registration["registration_no"])
        self.statements += 1


def _granted_view(database: DepartmentDatabase, tag: str) -> dict[str, dict[str, Any]]:
    """The department's rows of this run as the grant shows them."""
    with database.admin() as connection, connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f"SELECT * FROM {TABLE} WHERE registration_no LIKE %s", (f"{tag}-%",))
        return {
            r["registration_no"]: {
                "kind": r["kind"],
                "party_a": {
                    "name": r["party_a_name"],
                    "id_number": r["party_a_id_number"],
                    "household_district_code": r["party_a_household_district_code"],
                },
                "party_b": {
                    "name": r["party_b_name"],
                    "id_number": r["party_b_id_number"],
                    "household_district_code": r["party_b_household_district_code"],
                },
                "registered_on": r["registered_on"],
                "district_code": r["district_code"],
            }
            for r in cursor.fetchall()
        }


def _subscriber_table(dsn: str, schema: str, tag: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        try:
            cursor.execute(
                sql.SQL(
                    "SELECT * FROM {}.marriage_registration WHERE registration_no LIKE %s"
                ).format(sql.Identifier(schema)),
                (f"{tag}-%",),
            )
        except psycopg.errors.UndefinedTable:
            return {}
        return {
            r["registration_no"]: {
                k: r[k] for k in ("kind", "party_a", "party_b", "registered_on", "district_code")
            }
            for r in cursor.fetchall()
        }


def _gov_event_ids(bus: Bus, tag: str) -> Counter[str]:
    """How many times each event id of this run's rows is on the dataset's gov.* topic."""
    return Counter(event_id for event_id, _ in _gov_events(bus, tag))


def _gov_events(bus: Bus, tag: str) -> list[tuple[str, str]]:
    """(event id, registration number) of each event of this run's rows on gov.*."""
    settings = bus.settings
    consumer = Consumer(settings.consumer_config(f"cdc-test-{uuid.uuid4()}"))
    decode = AvroDeserializer(SchemaRegistryClient(settings.registry_config()))
    context = SerializationContext(GOV_TOPIC, MessageField.VALUE)
    partitions = consumer.list_topics(GOV_TOPIC, timeout=10).topics[GOV_TOPIC].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(GOV_TOPIC, p), timeout=10)[1]
        for p in partitions
    }
    consumer.assign([TopicPartition(GOV_TOPIC, p, 0) for p in partitions])
    seen: list[tuple[str, str]] = []
    done: set[int] = {p for p, end in ends.items() if end == 0}
    try:
        while len(done) < len(ends):
            for message in consumer.consume(1000, timeout=1):
                if message.error() or message.value() is None:
                    continue
                if message.offset() >= ends[message.partition()] - 1:
                    done.add(message.partition())
                event = decode(message.value(), context)
                record = event["after"] or event["before"]
                if record["registration_no"].startswith(f"{tag}-"):
                    assert event["source"]["origin"] == "cdc"
                    seen.append((str(event["event_id"]), record["registration_no"]))
    finally:
        consumer.close()
    return seen


def _connect_worker(bus: Bus, act: str) -> None:
    result = run_xbus(bus.env(), "stack", "connect", act, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_captured_table_ends_in_the_subscriber_table_as_the_grant_shows_it_through_kills(
    granted: Bus,
    postgres_dsn: str,
    connect: ConnectClient,
    department_database: Callable[..., DepartmentDatabase],
    tmp_path: Path,
) -> None:
    if not os.environ.get("XBUS_STACK_DATA_DIR"):
        pytest.fail("the kill test needs the stack's folder: run it under xbus stack exec --cdc")
    database = department_database()
    tag = f"T{uuid.uuid4().hex[:8]}"
    with database.admin() as connection:
        prepare_table(connection, database.user)
    workload = Workload(database, tag)
    workload.insert_rows(SNAPSHOT_ROWS)  # before the connector: they come as its snapshot
    source = tmp_path / "source.yaml"
    source.write_text(database.source_yaml())
    applied = run_xbus(granted.env(), "cdc", "apply", str(source))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    connector = "cdc.civil_affairs.marriage_registration"
    schema = f"cdc_{tag.lower()}"
    group = f"xbus-cdc-bridge-{tag}"

    def bridge(name: str) -> Any:
        return component(
            granted,
            tmp_path,
            name,
            "cdc-bridge",
            str(source),
            "--metrics-port",
            "0",
            "--group",
            group,
        )

    with ExitStack() as running:
        running.enter_context(engine(granted, tmp_path, f"cdc-engine-{tag}"))
        running.enter_context(
            component(
                granted,
                tmp_path,
                "sink",
                "connector",
                "postgres",
                "--subscriber",
                SUBSCRIBER,
                "--dsn",
                postgres_dsn,
                "--db-schema",
                schema,
                "--group",
                f"xbus-postgres-{tag}",
                "--metrics-port",
                "0",
            )
        )
        first_bridge = running.enter_context(bridge("bridge-1"))
        # The snapshot is through before the stream starts.
        wait_for(
            lambda: len(_subscriber_table(postgres_dsn, schema, tag)) >= SNAPSHOT_ROWS or None,
            240,
            "the snapshot rows in the subscriber's table",
        )
        killed, restarted = threading.Event(), threading.Event()

        def kill_and_restart_mid_stream(done: int) -> None:
            if done >= CHANGES // 3 and not killed.is_set():
                killed.set()
                first_bridge.kill()
                first_bridge.wait()
                _connect_worker(granted, "kill")
            elif done >= CHANGES // 2 and not restarted.is_set():
                restarted.set()
                _connect_worker(granted, "start")
                running.enter_context(bridge("bridge-2"))

        workload.run(CHANGES, kill_and_restart_mid_stream)
        assert killed.is_set() and restarted.is_set()
        expected = _granted_view(database, tag)
        wait_for(
            lambda: _subscriber_table(postgres_dsn, schema, tag) == expected or None,
            300,
            "the subscriber's table to equal the department's as the grant shows it",
        )
    state = connect.state(connector)
    assert state is not None and state.task == "RUNNING", state
    ids = _gov_event_ids(granted, tag)
    # Every change once in effect: replays after the kills republished the same ids.
    assert len(ids) == SNAPSHOT_ROWS + CHANGES
    status = run_xbus(granted.env(), "cdc", "status", str(source), "--group", group)
    assert status.returncode == 0, status.stdout + status.stderr
    [line] = [x for x in status.stdout.splitlines() if "civil_affairs.marriage_registration" in x]
    assert "connector RUNNING  task RUNNING" in line and "no slot" not in line, status.stdout
    assert "bridge lag 0 " in line, status.stdout  # the bridge has published everything
    removed = run_xbus(granted.env(), "cdc", "remove", str(source))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "dropped replication slot" in removed.stdout
    assert connect.state(connector) is None


def _cdc_records(bus: Bus, tag: str) -> int:
    """How many records of this run's rows Debezium wrote to the source's cdc.* topic."""
    topic = "cdc.civil_affairs.marriage_registration"
    consumer = Consumer(bus.settings.consumer_config(f"cdc-test-{uuid.uuid4()}"))
    try:
        try:
            end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        except KafkaException:  # not made yet
            return 0
        consumer.assign([TopicPartition(topic, 0, 0)])
        count, offset = 0, -1
        while offset < end - 1:
            for message in consumer.consume(1000, timeout=1):
                if message.error():
                    continue
                offset = message.offset()
                count += tag.encode() in (message.value() or b"")
        return count
    finally:
        consumer.close()


def _dead_letters(bus: Bus, tag: str) -> list[tuple[dict[str, bytes], bytes]]:
    """The CDC dead letters of civil affairs whose original record is of this run."""
    topic = "cdc.civil_affairs._dead_letters"
    consumer = Consumer(bus.settings.consumer_config(f"cdc-test-{uuid.uuid4()}"))
    found = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        left = {p for p, end in ends.items() if end > 0}
        while left:
            for message in consumer.consume(500, timeout=1):
                if message.error():
                    continue
                if message.offset() >= ends[message.partition()] - 1:
                    left.discard(message.partition())
                if tag.encode() in (message.value() or b""):
                    found.append((dict(message.headers() or []), message.value() or b""))
    finally:
        consumer.close()
    return found


def test_a_row_the_dataset_refuses_goes_to_the_departments_dead_letters_and_the_stream_goes_on(
    granted: Bus,
    connect: ConnectClient,
    department_database: Callable[..., DepartmentDatabase],
    tmp_path: Path,
) -> None:
    database = department_database()
    tag = f"D{uuid.uuid4().hex[:8]}"
    with database.admin() as connection:
        prepare_table(connection, database.user)
    source = tmp_path / "source.yaml"
    source.write_text(database.source_yaml())

    def cdc(*args: str) -> None:
        done = run_xbus(granted.env(), "cdc", *args, str(source))
        assert done.returncode == 0, done.stdout + done.stderr

    workload = Workload(database, tag)
    workload.insert_rows(1)
    cdc("apply")
    # Its snapshot read the row, and Connect recorded how far (offsets flush each second).
    wait_for(lambda: _cdc_records(granted, tag) or None, 60, "the first row on cdc.*")
    time.sleep(2)
    cdc("remove")
    bad = workload._registration()
    bad["party_a"]["id_number"] = "310101199001011230"  # its check digit is wrong
    good = workload._registration()
    with database.admin() as connection:
        connection.execute(INSERT, row(bad))
        connection.execute(INSERT, row(good))
    # Applied again after a remove, the connector snapshots afresh (the first one's offsets
    # went with it): the rows written while there was none are not lost.
    cdc("apply")
    with component(
        granted,
        tmp_path,
        "bridge",
        "cdc-bridge",
        str(source),
        "--metrics-port",
        "0",
        "--group",
        f"xbus-cdc-bridge-{tag}",
    ):
        wait_for(
            lambda: any(n == good["registration_no"] for _, n in _gov_events(granted, tag)),
            120,
            "the good row on gov.*",
        )
        letters = wait_for(lambda: _dead_letters(granted, tag) or None, 60, "the dead letter")
    # The first row (in each snapshot) and the good one; not the bad one.
    published = {number for _, number in _gov_events(granted, tag)}
    assert published == {f"{tag}-000001", good["registration_no"]}
    [(headers, value)] = letters
    assert headers["xbus-dlq-reason"] == b"invalid_record"
    assert b"after.party_a.id_number" in headers["xbus-dlq-error"]
    assert json.loads(value)["after"]["registration_no"] == bad["registration_no"]
    cdc("remove")
