"""Change data capture, measured: Debezium's snapshot and the bridge's republishing in
rows/s, next to a raw confluent-kafka consume→produce of the same records in the same run;
then the streaming latency from a commit in the department's database to its event on
``gov.*`` (p50/p99) at a fixed rate of single-row commits; and the Connect worker's and the
bridge's memory.

    xbus stack exec --cdc -- python -m tests.benchmarks.bench_cdc [--rows 100000] [--rate 200]

The latency of each change is read from the ``gov.*`` record itself: the event's ``ts_ms`` is
the commit time PostgreSQL reported, and the record's timestamp is when the bridge produced
it (one clock: the same machine). The part up to Kafka Connect's own ``cdc.*`` record is
shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.department_database import (
    drop_department_database,
    make_department_database,
    superuser_conninfo,
)
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.serde import registry_client
from xbus.core.settings import BusSettings
from xbus.producers.cdc.demo import INSERT, prepare_table, row
from xbus.producers.cdc.settings import CdcSettings
from xbus.producers.demodata import DemoData

CDC_TOPIC = "cdc.civil_affairs.marriage_registration"
GOV_TOPIC = "gov.civil_affairs.marriage_registration"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The highest RSS of a process, sampled every half second."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak = max(self.peak, _rss_mb(self.pid))
            except OSError:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _ends(consumer: Consumer, topic: str) -> dict[int, int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in meta.partitions
    }


def _count(settings: BusSettings, topic: str) -> int:
    consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4()}"))
    try:
        return sum(_ends(consumer, topic).values())
    finally:
        consumer.close()


def _wait_count(settings: BusSettings, topic: str, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while _count(settings, topic) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic} did not reach {target} records in {timeout:.0f}s")
        time.sleep(0.2)
    return time.monotonic()


def _connect_pid(settings: CdcSettings) -> int:
    data = Path(os.environ["XBUS_STACK_DATA_DIR"])
    port = settings.connect_url.rsplit(":", 1)[1]
    return int((data / "run" / f"connect-{port}.pid").read_text().split()[0])


def _raw_passthrough(settings: BusSettings, count: int) -> float:
    """Records/s of a raw consume→produce of ``count`` records of the cdc topic (the anchor)."""
    target = f"bench.raw-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(settings.consumer_config(f"bench-raw-{uuid.uuid4()}"))
    producer = Producer(settings.producer_config(**{"linger.ms": 5}))
    consumer.subscribe([CDC_TOPIC])
    done = 0
    started = time.monotonic()
    while done < count:
        for message in consumer.consume(2000, 1.0):
            if message.error():
                continue
            producer.produce(target, message.value(), message.key())
            producer.poll(0)
            done += 1
    producer.flush(60)
    elapsed = time.monotonic() - started
    consumer.close()
    return count / elapsed


def _bridge(source: Path, log: Path, group: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xbus.cli",
                "run",
                "cdc-bridge",
                str(source),
                "--metrics-port",
                "0",
                "--group",
                group,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _latencies(
    settings: BusSettings, start_offsets: dict[int, int], tag: str
) -> tuple[list[float], list[float]]:
    """Per change of this run: commit → cdc.* record, and commit → gov.* record (ms)."""
    consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4()}"))
    to_cdc: dict[str, float] = {}
    ends = _ends(consumer, CDC_TOPIC)
    consumer.assign([TopicPartition(CDC_TOPIC, p, start_offsets.get(p, 0)) for p in ends])
    remaining = {p for p, e in ends.items() if e > start_offsets.get(p, 0)}
    while remaining:
        for m in consumer.consume(2000, 1.0):
            if m.error():
                continue
            if m.offset() >= ends[m.partition()] - 1:
                remaining.discard(m.partition())
            change = json.loads(m.value())
            after = change.get("after") or {}
            if str(after.get("registration_no", "")).startswith(tag):
                to_cdc[after["registration_no"]] = m.timestamp()[1] - change["source"]["ts_ms"]
    consumer.close()
    decode = AvroDeserializer(SchemaRegistryClient(settings.registry_config()))
    context = SerializationContext(GOV_TOPIC, MessageField.VALUE)
    consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4()}"))
    ends = _ends(consumer, GOV_TOPIC)
    consumer.assign([TopicPartition(GOV_TOPIC, p, 0) for p in ends])
    remaining = {p for p, e in ends.items() if e > 0}
    to_gov: list[float] = []
    while remaining:
        for m in consumer.consume(2000, 1.0):
            if m.error():
                continue
            if m.offset() >= ends[m.partition()] - 1:
                remaining.discard(m.partition())
            event = decode(m.value(), context)
            number = (event["after"] or {}).get("registration_no", "")
            if number in to_cdc and event["op"] == "CREATE":
                to_gov.append(m.timestamp()[1] - int(event["ts_ms"].timestamp() * 1000))
    consumer.close()
    return list(to_cdc.values()), to_gov


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows to snapshot")
    parser.add_argument("--rate", type=float, default=200.0, help="commits/s while streaming")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to stream")
    args = parser.parse_args()
    settings, cdc = BusSettings(), CdcSettings()
    register_catalog(Catalog.load(settings.schemas_dir), registry_client(settings))
    superuser = superuser_conninfo(os.environ["XBUS_POSTGRES_DSN"])
    assert superuser, "run under xbus stack exec --cdc"
    database = make_department_database(superuser, cdc.cdc_secrets_dir)
    work = Path(tempfile.mkdtemp(prefix="xbus-bench-cdc-"))
    source = work / "source.yaml"
    source.write_text(database.source_yaml())
    bridge = None
    try:
        data = DemoData(seed=1)
        with database.admin() as connection:
            prepare_table(connection, database.user)
            with connection.cursor() as cursor, connection.transaction():
                rows = []
                for n in range(args.rows):
                    registration = data.marriage_registration()
                    registration["registration_no"] = f"S-{n:07d}"
                    rows.append(row(registration))
                cursor.executemany(INSERT, rows)
        cdc_before = _count(settings, CDC_TOPIC)
        gov_before = _count(settings, GOV_TOPIC)
        connect = Peak(_connect_pid(cdc))
        started = time.monotonic()
        applied = subprocess.run(
            [sys.executable, "-m", "xbus.cli", "cdc", "apply", str(source)],
            capture_output=True,
            text=True,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        snapshot_done = _wait_count(settings, CDC_TOPIC, cdc_before + args.rows, 900)
        snapshot_rate = args.rows / (snapshot_done - started)
        # The bridge on the snapshot, from the start of its group.
        bridge = _bridge(
            source, work / "bridge.log", f"xbus-cdc-bridge-bench-{uuid.uuid4().hex[:6]}"
        )
        bridge_peak = Peak(bridge.pid)
        bridge_started = time.monotonic()
        bridged_done = _wait_count(settings, GOV_TOPIC, gov_before + cdc_before + args.rows, 900)
        bridge_rate = (args.rows + cdc_before) / (bridged_done - bridge_started)
        raw_rate = _raw_passthrough(settings, args.rows + cdc_before)
        # Streaming: single-row commits at a fixed rate.
        consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4()}"))
        start_offsets = _ends(consumer, CDC_TOPIC)
        consumer.close()
        tag = f"L{uuid.uuid4().hex[:6]}-"
        count = int(args.rate * args.seconds)
        with database.admin() as connection:
            begin = time.monotonic()
            for n in range(count):
                registration = data.marriage_registration()
                registration["registration_no"] = f"{tag}{n:07d}"
                connection.execute(INSERT, row(registration))
                pause = begin + (n + 1) / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        gov_target = gov_before + cdc_before + args.rows + count
        _wait_count(settings, GOV_TOPIC, gov_target, 300)
        to_cdc, to_gov = _latencies(settings, start_offsets, tag)
        print(
            f"\nCDC benchmark ({args.rows:,} rows snapshotted, "
            f"{count:,} commits at {args.rate:g}/s)"
        )
        print(
            f"  Debezium snapshot into cdc.*:        {snapshot_rate:8,.0f} rows/s "
            f"(connector applied → last row on Kafka)"
        )
        print(f"  bridge, cdc.* → gov.* (SDK):         {bridge_rate:8,.0f} events/s")
        print(
            f"  raw consume→produce, same records:   {raw_rate:8,.0f} records/s "
            f"(bridge at {bridge_rate / raw_rate:.2f}× the raw client)"
        )
        print(f"  streaming, commit → cdc.* record:    {_percentiles(to_cdc)}")
        print(f"  streaming, commit → gov.* event:     {_percentiles(to_gov)}")
        print(f"  Kafka Connect worker RSS: peak {connect.stop():.0f} MB")
        print(f"  bridge RSS: peak {bridge_peak.stop():.0f} MB")
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(30)
        subprocess.run(
            [sys.executable, "-m", "xbus.cli", "cdc", "remove", str(source)],
            capture_output=True,
            text=True,
        )
        drop_department_database(database)


if __name__ == "__main__":
    main()
