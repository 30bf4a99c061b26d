"""Policy engine throughput and added latency, next to a raw confluent-kafka consume→produce
passthrough of the same bytes, in the same run.

1. N realistic business-licence events are pre-loaded onto the dataset's topic, and the ten
   grants of tests/benchmarks/grants/ (projections, each mask kind, a row filter, a derived
   and a looked-up field) are put in force.
2. Throughput: one engine worker (``xbus run engine``) works through the pre-loaded topic;
   events/s is N over the span between the first and last record it writes to one
   subscriber's topic (so start-up is not counted). The passthrough, in this process,
   copies the same N records to a topic of its own; timed from its first record read to its
   last write acknowledged.
3. Latency: once caught up, M more events are produced at a steady rate; the added latency
   of each is the timestamp of its output record minus the timestamp of its source record
   (both set by their producers, in ms). p50 and p99. The engine is measured first, then
   stopped, then the passthrough (throughput and a latency phase of its own), so neither
   competes with the other for the CPU.

    make bench
    python tests/benchmarks/bench_engine.py --events 50000   # against the XBUS_* settings
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.checkout import ROOT
from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
from xbus.core.producing import produce
from xbus.core.serde import WireEncoder, registered_schema_id, registry_client
from xbus.core.settings import BusSettings
from xbus.core.topics import value_subject
from xbus.producers.demodata import DISTRICTS, DemoData
from xbus.streams.grant_files import apply_grants
from xbus.streams.state import set_reference_table

GRANTS = Path(__file__).parent / "grants"
WATCHED = "deliver.bench_0.business_licence"


def _events(settings: BusSettings, count: int, seed: int) -> list[tuple[bytes, bytes]]:
    catalog = Catalog.load(settings.schemas_dir)
    dataset = catalog.get("market_regulation", "business_licence")
    schema_id = registered_schema_id(
        registry_client(settings), value_subject(dataset.topic), dataset.envelope
    )
    assert schema_id is not None
    encoder, name, data = (
        WireEncoder(schema_id, dataset.envelope),
        record_full_name(dataset.schema),
        DemoData(seed),
    )
    out = []
    for _ in range(count):
        licence = data.business_licence()
        event = change_event(
            department="market_regulation",
            dataset="business_licence",
            op=Op.CREATE,
            after=licence,
            system="bench",
        )
        out.append(
            (dataset.key_of(licence).encode(), encoder.encode(with_union_branches(event, name)))
        )
    return out


def _produce(
    settings: BusSettings, topic: str, records: list[tuple[bytes, bytes]], rate: float | None = None
) -> None:
    producer = Producer(settings.producer_config())
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        produce(producer, topic, value, key)
        producer.poll(0)
    producer.flush(60)


def _timestamps(
    settings: BusSettings, topic: str, count: int, timeout: float = 600
) -> dict[bytes, int]:
    """Output timestamp (ms) by value prefix hash... keyed by record key + source offset."""
    consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4()}"))
    consumer.subscribe([topic])
    found: dict[bytes, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                headers = dict(message.headers() or [])
                source = (
                    headers.get("xbus-source-offset", b"")
                    + b"@"
                    + headers.get("xbus-source-partition", b"")
                )
                found[source] = message.timestamp()[1]
    finally:
        consumer.close()
    return found


def _source_timestamps(settings: BusSettings, topic: str) -> dict[bytes, int]:
    consumer = Consumer(
        settings.kafka_config(**{"group.id": f"bench-{uuid.uuid4()}", "enable.partition.eof": True})
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    found, done = {}, set()
    try:
        while len(done) < len(metadata.partitions):
            message = consumer.poll(5)
            if message is None:
                break
            if message.error():
                done.add(message.partition())
                continue
            found[f"{message.offset()}@{message.partition()}".encode()] = message.timestamp()[1]
    finally:
        consumer.close()
    return found


class Passthrough(threading.Thread):
    """Raw confluent-kafka: consume the source topic, produce each record unchanged, commit
    after the writes are acknowledged (the same guarantee the engine gives)."""

    def __init__(self, settings: BusSettings, source: str, target: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(settings.consumer_config(f"bench-passthrough-{uuid.uuid4()}"))
        self.producer = Producer(settings.producer_config())
        self.source, self.target = source, target
        self.stop = threading.Event()
        self.copied = 0
        self.first_read: float | None = None
        self.last_ack = 0.0

    def run(self) -> None:
        self.consumer.subscribe([self.source])
        while not self.stop.is_set():
            messages = self.consumer.consume(500, timeout=0.1)
            batch = [m for m in messages if not m.error()]
            if not batch:
                continue
            self.first_read = self.first_read or time.perf_counter()
            for m in batch:
                headers = [
                    ("xbus-source-offset", str(m.offset()).encode()),
                    ("xbus-source-partition", str(m.partition()).encode()),
                ]
                produce(self.producer, self.target, m.value(), m.key(), headers=headers)
            self.producer.flush(60)
            self.consumer.commit(asynchronous=False)
            self.copied += len(batch)
            self.last_ack = time.perf_counter()
        self.consumer.close()


def _latencies(
    source: dict[bytes, int], outputs: dict[bytes, int], keys: set[bytes]
) -> tuple[float, float]:
    added = sorted(outputs[k] - source[k] for k in keys if k in outputs and k in source)
    return statistics.median(added), added[min(len(added) - 1, int(len(added) * 0.99))]


def _latency_phase(
    settings: BusSettings, source: str, args: argparse.Namespace, seed: int
) -> tuple[set[bytes], dict[bytes, int]]:
    """Produce the latency events at the steady rate; their coordinates, and the timestamps
    of every source record."""
    before = _source_timestamps(settings, source).keys()
    print(f"latency: {args.latency_events} events at {args.rate:.0f}/s...", flush=True)
    _produce(settings, source, _events(settings, args.latency_events, seed=seed), args.rate)
    sources = _source_timestamps(settings, source)
    return set(sources) - set(before), sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-events", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=500.0, help="events/s in phase 3")
    args = parser.parse_args()

    settings = BusSettings()
    os.environ.setdefault("XBUS_PSEUDONYM_KEY", "benchmark-pseudonym-secret")
    catalog = Catalog.load(settings.schemas_dir)
    register_catalog(catalog, registry_client(settings))
    source = catalog.get("market_regulation", "business_licence").topic
    passthrough_topic = f"bench.passthrough.{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, {source: 3, passthrough_topic: 3, WATCHED: 3})
    apply_grants(settings, catalog, [GRANTS])
    set_reference_table(settings, "districts", DISTRICTS)

    print(f"pre-loading {args.events} events...", flush=True)
    _produce(settings, source, _events(settings, args.events, seed=1))

    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "bench-engine.log", "wb")  # noqa: SIM115
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xbus.cli",
            "run",
            "engine",
            "--app-id",
            f"bench-engine-{uuid.uuid4().hex[:6]}",
            "--metrics-port",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        outputs = _timestamps(settings, WATCHED, args.events)
        span = (max(outputs.values()) - min(outputs.values())) / 1000
        engine_rate = len(outputs) / max(span, 1e-3)
        engine_fresh, sources = _latency_phase(settings, source, args, seed=2)
        engine_out = _timestamps(settings, WATCHED, args.events + args.latency_events)
    finally:
        engine.terminate()
        engine.wait(30)

    # The passthrough runs alone, as the engine did: over the same records, then the
    # latency phase with fresh ones.
    passthrough = Passthrough(settings, source, passthrough_topic)
    passthrough.start()
    while passthrough.copied < args.events:
        time.sleep(0.05)
    assert passthrough.first_read is not None
    raw_rate = args.events / (passthrough.last_ack - passthrough.first_read)
    raw_fresh, raw_sources = _latency_phase(settings, source, args, seed=3)
    raw_out = _timestamps(settings, passthrough_topic, args.events + 2 * args.latency_events)
    passthrough.stop.set()
    passthrough.join(30)

    e50, e99 = _latencies(sources, engine_out, engine_fresh)
    r50, r99 = _latencies(raw_sources, raw_out, raw_fresh)
    print(
        f"\nengine, 1 worker, 10 grants:         {engine_rate:>9,.0f} events/s   "
        f"added latency p50 {e50:.0f} ms, p99 {e99:.0f} ms"
    )
    print(
        f"raw consume→produce passthrough:      {raw_rate:>9,.0f} events/s   "
        f"added latency p50 {r50:.0f} ms, p99 {r99:.0f} ms"
    )
    print(f"ratio engine / passthrough:           {engine_rate / raw_rate:>9.2f}")


if __name__ == "__main__":
    main()
