"""The engine benchmark's instruments: engine workers run as processes, raw confluent-kafka
loops that stand for the engine's I/O, and readers that see only what the current run wrote.

Every phase marks the end offsets of the topics it reads before it starts, and every
consumer group (the engine's included) is new and starts at those marks: a second run on
the same stack counts only its own records, never the history of the topics."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from tests.support.checkout import ROOT
from xbus.core import headers
from xbus.core.producing import produce
from xbus.core.settings import BusSettings
from xbus.core.topics import AUDIT_TOPIC

# (topic, partition) -> offset
Offsets = dict[tuple[str, int], int]

# The engine's producer lingers 2 ms (``xbus.streams.worker.OutputWriter``); the anchors'
# producers do the same, so that batching is not what the comparison measures.
LINGER_MS = 2


def coordinate(partition: int, offset: int) -> int:
    """A source record's partition and offset as one int (dictionaries of a million of them
    stay small)."""
    return partition << 40 | offset


class Out(NamedTuple):
    """One record as the engine wrote it, to be written again by the fan-out anchor."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def end_offsets(settings: BusSettings, topics: Iterable[str], timeout: float = 60) -> Offsets:
    """Where every partition of ``topics`` ends now: what is written later is this run's.
    Waits (up to ``timeout``) for the partitions of a topic just made to have a leader."""
    admin = AdminClient(settings.kafka_config())
    deadline = time.monotonic() + timeout
    while True:
        try:
            wanted = {
                TopicPartition(topic, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
                for topic in topics
                for p in admin.list_topics(topic, timeout=10).topics[topic].partitions
            }
            found = admin.list_offsets(wanted, request_timeout=10)
            return {(tp.topic, tp.partition): f.result(10).offset for tp, f in found.items()}
        except KafkaException:  # e.g. "not leader": a topic just made, not settled yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_group_at(settings: BusSettings, group: str, offsets: Offsets) -> None:
    """Commit ``offsets`` for the new consumer group ``group``: its members read what comes
    after the marks, not the topics' history (``auto.offset.reset`` is earliest)."""
    marks = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    admin = AdminClient(settings.kafka_config())
    request = [ConsumerGroupTopicPartitions(group, marks)]
    for future in admin.alter_consumer_group_offsets(request).values():
        future.result(30)


def delete_topics(settings: BusSettings, topics: Sequence[str]) -> None:
    """Delete the run's own topics (the anchors'), so runs do not pile them up."""
    if topics:
        admin = AdminClient(settings.kafka_config())
        for future in admin.delete_topics(list(topics), operation_timeout=30).values():
            future.result(60)


def produce_events(
    settings: BusSettings,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    rate: float | None = None,
) -> dict[int, int]:
    """Write ``records`` (at ``rate`` a second if given); the CreateTime (ms) of each record
    Kafka took, by its coordinate."""
    producer = Producer(settings.producer_config())
    producer.list_topics(topic, timeout=30)  # a first write must not wait for the metadata
    taken: dict[int, int] = {}

    def report(error: Any, message: Any) -> None:
        if error is None:
            taken[coordinate(message.partition(), message.offset())] = message.timestamp()[1]

    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        produce(producer, topic, value, key, on_delivery=report)
        producer.poll(0)
    producer.flush(120)
    return taken


def _source_of(record: Any) -> int | None:
    """The coordinate of the source record an output was written for: from its headers, or
    for an audit record from its content."""
    found = dict(record.headers() or [])
    if headers.ORIGIN in found:
        origin = headers.read_origin(found[headers.ORIGIN])
        return coordinate(origin.partition, origin.offset)
    if headers.SOURCE_OFFSET in found:
        return coordinate(int(found[headers.SOURCE_PARTITION]), int(found[headers.SOURCE_OFFSET]))
    if record.topic() == AUDIT_TOPIC:
        source = orjson.loads(record.value())["source"]
        return coordinate(source["partition"], source["offset"])
    return None


def _read(settings: BusSettings, marks: Offsets) -> Consumer:
    consumer = Consumer(settings.consumer_config(f"bench-reader-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in marks.items()])
    return consumer


def output_times(
    settings: BusSettings,
    topic: str,
    marks: Offsets,
    wanted: int,
    *,
    timeout: float = 900,
    among: Collection[int] | None = None,
    tick: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """The CreateTime (ms) of the records written to ``topic`` after ``marks``, by the
    coordinate of their source record (the first copy of a record written twice; only
    sources ``among`` these if given), once ``wanted`` source records are covered or
    ``timeout`` passed. ``tick(count)`` is called about twice a second while waiting."""
    consumer = _read(settings, {tp: o for tp, o in marks.items() if tp[0] == topic})
    found: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    next_tick = 0.0
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.25):
                if message.error():
                    continue
                source = _source_of(message)
                if source is not None and (among is None or source in among):
                    found.setdefault(source, message.timestamp()[1])
            if tick is not None and time.monotonic() >= next_tick:
                tick(len(found))
                next_tick = time.monotonic() + 0.5
    finally:
        consumer.close()
    return found


def outputs_of(settings: BusSettings, marks: Offsets, sources: Sequence[int]) -> list[list[Out]]:
    """Everything written after ``marks`` (read to the ends the topics have now) for each of
    ``sources``, in the order of ``sources``; sources with no record left out."""
    ends = end_offsets(settings, {t for t, _ in marks})
    pending = {tp for tp, end in ends.items() if end > marks[tp]}
    consumer = _read(settings, {tp: marks[tp] for tp in pending})
    by_source: dict[int, list[Out]] = {s: [] for s in sources}
    message: Any
    try:
        while pending:
            for message in consumer.consume(1000, timeout=1):
                if message.error():
                    continue
                tp = (message.topic(), message.partition())
                if message.offset() + 1 >= ends[tp]:
                    pending.discard(tp)
                if message.offset() >= ends[tp]:
                    continue
                source = _source_of(message)
                if source in by_source:
                    by_source[source].append(
                        Out(tp[0], message.key(), message.value(), list(message.headers() or []))
                    )
    finally:
        consumer.close()
    return [by_source[s] for s in sources if by_source[s]]


def rss_bytes(pid: int) -> int:
    """A process's resident set size now (Linux), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class EngineWorkers:
    """``count`` engine workers (``xbus run engine`` processes) in the consumer group
    ``group``, each logging to a file of its own; stopped on leaving the ``with``."""

    def __init__(self, settings: BusSettings, group: str, count: int) -> None:
        self.settings, self.group = settings, group
        logs = Path(os.environ.get("TMPDIR", "/tmp"))
        self.logs = [logs / f"{group}-{i}.log" for i in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        for log in self.logs:
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "xbus.cli", "run", "engine"]
                        + ["--app-id", group, "--metrics-port", "0"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )

    def __enter__(self) -> EngineWorkers:
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def rss(self) -> int:
        """The workers' resident memory together, in bytes."""
        return sum(rss_bytes(pid) for pid in self.pids)

    def wait_joined(self, timeout: float = 180) -> None:
        """Return once every worker is a member of the group and the group is stable, so that
        no rebalance falls inside a measurement; raise if a worker died or time ran out."""
        admin = AdminClient(self.settings.kafka_config())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process, log in zip(self.processes, self.logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"an engine worker stopped; see {log}")
            future = admin.describe_consumer_groups([self.group])[self.group]
            try:
                group = future.result(10)
                if group.state == ConsumerGroupState.STABLE and len(group.members) == len(
                    self.processes
                ):
                    return
            except Exception:  # noqa: BLE001 - not known to the coordinator yet
                pass
            time.sleep(0.5)
        raise RuntimeError(f"engine workers not all in group {self.group} after {timeout:.0f}s")


class RawLoop(threading.Thread):
    """Raw confluent-kafka with the engine's guarantee: consume the source from ``marks``,
    produce what ``forward`` makes of each record, wait for Kafka's acknowledgements, then
    commit. ``rate()`` is events/s over the first ``count`` events, first read to last
    acknowledgement."""

    def __init__(
        self,
        settings: BusSettings,
        source: str,
        marks: Offsets,
        forward: Callable[[Any], Sequence[Out]],
        count: int,
    ) -> None:
        super().__init__(daemon=True)
        group = f"bench-raw-{uuid.uuid4().hex}"
        start_group_at(settings, group, marks)
        self.consumer = Consumer(settings.consumer_config(group))
        self.producer = Producer(settings.producer_config(**{"linger.ms": LINGER_MS}))
        self.source, self.forward, self.count = source, forward, count
        self.stop = threading.Event()
        self.copied = 0
        self.first_read: float | None = None
        self.done = threading.Event()
        self.elapsed = 0.0

    def run(self) -> None:
        self.consumer.subscribe([self.source])
        try:
            while not self.stop.is_set():
                # Wait for the first record only, then take what is there.
                first = self.consumer.poll(0.1)
                if first is None:
                    continue
                batch = [m for m in [first, *self.consumer.consume(499, 0)] if not m.error()]
                if not batch:
                    continue
                self.first_read = self.first_read or time.perf_counter()
                for message in batch:
                    for out in self.forward(message):
                        produce(self.producer, out.topic, out.value, out.key, headers=out.headers)
                    self.producer.poll(0)
                self.producer.flush(120)
                self.consumer.commit(asynchronous=False)
                self.copied += len(batch)
                if self.copied >= self.count and not self.done.is_set():
                    self.elapsed = time.perf_counter() - self.first_read
                    self.done.set()
        finally:
            self.consumer.close()

    def drain(self, settings: BusSettings, marks: Offsets, timeout: float = 300) -> None:
        """Wait until every source record written so far after ``marks`` is copied."""
        ends = end_offsets(settings, [self.source])
        total = sum(end - marks[tp] for tp, end in ends.items())
        deadline = time.monotonic() + timeout
        while self.copied < total and time.monotonic() < deadline:
            time.sleep(0.1)

    def rate(self) -> float:
        """Events/s over the first ``count`` events (waits for them)."""
        while not self.done.wait(1):
            if not self.is_alive():
                raise RuntimeError("the raw loop stopped before its events were copied")
        return self.copied / self.elapsed


def passthrough(target: str) -> Callable[[Any], Sequence[Out]]:
    """Each source record unchanged to ``target``, with its coordinates in the headers the
    engine uses (so latency is matched alike)."""

    def forward(message: Any) -> Sequence[Out]:
        return [
            Out(
                target,
                message.key(),
                message.value(),
                [
                    (headers.SOURCE_PARTITION, str(message.partition()).encode()),
                    (headers.SOURCE_OFFSET, str(message.offset()).encode()),
                ],
            )
        ]

    return forward


def fan_out(
    shapes: Sequence[Sequence[Out]], topics: dict[str, str]
) -> Callable[[Any], Sequence[Out]]:
    """For each source record, the records the engine wrote for one event of its warm-up (in
    turn): same count, keys, values and headers, to ``topics[engine topic]``."""
    replayed = [[o._replace(topic=topics[o.topic]) for o in shape] for shape in shapes]
    turns: Iterator[int] = iter(range(sys.maxsize))

    def forward(_: Any) -> Sequence[Out]:
        return replayed[next(turns) % len(replayed)]

    return forward
