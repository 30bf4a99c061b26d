"""The engine's hot path: one librdkafka consumer in the engine's group, subscribed by
pattern to every ``gov.*`` topic, routing its records in batches, and one idempotent
producer writing what they lead to.

Per batch: consume up to ``BATCH`` records, route them all (``xbus.streams.routing``) and
hand every output to the producer; the offsets of a batch are stored for commit only once
Kafka acknowledged each of its writes (at least once). Batches are pipelined: while up to
``IN_FLIGHT`` batches wait for their acknowledgements the next one is routed, and batches
are settled in order, so a stored offset never passes a batch whose writes are not all
acknowledged. Everything runs on one thread; before a rebalance gives partitions up (inside
``consume``) and before the consumer closes, every batch in flight is settled, so what was
done is committed and nothing half done is.

A write Kafka refuses (or does not acknowledge within ``WRITE_TIMEOUT``) sends the worker
back to the first offsets of the batches in flight, to route them again; a registry outage
holds the batch being routed and retries it with growing pauses.

A ``gov.*`` topic whose dataset the engine does not know is looked up in the registry when
it is assigned; until its dataset is registered its partitions stay paused (nothing of them
is read, so nothing of them is skipped), and they are resumed once it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Dataset
from xbus.core.errors import RegistryUnavailable
from xbus.core.metrics import (
    ENGINE_LATENCY,
    ENGINE_PARTITIONS,
    ENGINE_WRITES_REFUSED,
)
from xbus.core.producing import produce
from xbus.core.settings import BusSettings
from xbus.core.topics import DELIVERY_PREFIX, SOURCE_PREFIX, parse_source_topic
from xbus.streams.audit import AuditChains, chain_of
from xbus.streams.routing import Output, Router, Routing

log = logging.getLogger(__name__)

SOURCES_PATTERN = "^" + SOURCE_PREFIX.replace(".", "\\.")
BATCH = 1000
BATCH_WAIT = 0.05
IN_FLIGHT = 3
WRITE_TIMEOUT = 120.0
GRANTS_WAIT = 60.0


class Batch:
    """A batch whose writes are in flight: where its records start and end per partition,
    the chains it extended, its metric counts, and its delivery reports as they come."""

    __slots__ = ("counts", "ends", "outstanding", "refused", "sent", "started", "starts", "touched")

    def __init__(self, records: Sequence[Message], started: float) -> None:
        self.starts: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        for m in records:
            where = (m.topic() or "", m.partition() or 0)
            offset = m.offset() or 0
            self.starts.setdefault(where, offset)
            self.ends[where] = offset + 1
        self.touched = {chain_of(topic, partition) for topic, partition in self.starts}
        self.counts: Counter[Any] = Counter()
        self.outstanding = 0
        self.refused: list[str] = []
        self.started = started
        self.sent = 0.0

    def report(self, error: Any, message: Any) -> None:
        """The delivery report of one of the batch's writes."""
        self.outstanding -= 1
        if error is not None:
            self.refused.append(f"{message.topic()}[{message.partition()}]: {error}")


class OutputWriter:
    """The engine's producer (idempotent, acks from all in-sync replicas)."""

    def __init__(self, settings: BusSettings) -> None:
        self._producer = Producer(settings.producer_config(**{"linger.ms": 2}))

    def send(self, outputs: Iterable[Output], batch: Batch) -> None:
        """Hand ``outputs`` to the producer; their delivery reports go to ``batch``."""
        producer, report = self._producer, batch.report
        for o in outputs:
            batch.outstanding += 1
            produce(producer, o.topic, o.value, o.key, headers=o.headers, on_delivery=report)
        batch.sent = time.monotonic()

    def serve(self, timeout: float) -> None:
        """Serve the delivery reports that arrived, waiting up to ``timeout`` for one."""
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait for every write in flight (their reports served); how many are left."""
        return int(self._producer.flush(timeout))


@dataclass
class Sources:
    """Which source topics the engine can route: those whose dataset it knows.

    ``lookup(topic)`` finds a topic's registered dataset (None if it has none yet), and
    ``learn(dataset)`` makes it known to the policy before any record of it is routed."""

    known: set[str]
    lookup: Callable[[str], Dataset | None]
    learn: Callable[[Dataset], None]

    def can_route(self, topic: str) -> bool:
        """Whether records of ``topic`` may be routed now (looking its dataset up if needed)."""
        if topic in self.known:
            return True
        try:
            parse_source_topic(topic)
        except ValueError:
            return False
        dataset = self.lookup(topic)
        if dataset is None:
            return False
        self.learn(dataset)
        self.known.add(topic)
        log.warning("source topic %s: its dataset is registered, its records are routed", topic)
        return True


class HotPath:
    """Consumes the source topics as consumer group ``group`` and routes them with
    ``router``; ``write`` writes a batch's outputs and returns once Kafka acknowledged them
    all (or raises ``Unacknowledged``)."""

    def __init__(
        self,
        settings: BusSettings,
        group: str,
        router: Router,
        chains: AuditChains,
        sources: Sources,
        writer: OutputWriter,
        *,
        ready: threading.Event | None = None,
        discovery_interval: float = 10.0,
        pattern: str = SOURCES_PATTERN,
    ) -> None:
        self._settings, self._router, self._chains = settings, router, chains
        self._sources, self._writer, self._ready = sources, writer, ready
        self._discovery_interval, self._pattern = discovery_interval, pattern
        self._consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": group,
                    "auto.offset.reset": "earliest",
                    # Offsets are stored by hand once a batch's writes are acknowledged, and
                    # committed by librdkafka, also when partitions are given up or on close.
                    "enable.auto.commit": True,
                    "enable.auto.offset.store": False,
                    "auto.commit.interval.ms": 1000,
                    # New gov.* topics are found on the next metadata refresh.
                    "topic.metadata.refresh.interval.ms": max(1000, int(discovery_interval * 1000)),
                    "fetch.wait.max.ms": 50,
                    # A registry outage holds a batch for as long as it lasts.
                    "max.poll.interval.ms": 600_000,
                    # A worker that dies (kill -9, a lost machine) is noticed after 10 s, and
                    # only its partitions move: the others keep routing meanwhile (incremental
                    # rebalancing), instead of every worker stopping until the dead one's
                    # session runs out.
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 2_000,
                    "partition.assignment.strategy": "cooperative-sticky",
                }
            )
        )
        self._paused: set[tuple[str, int]] = set()
        self._assigned: set[tuple[str, int]] = set()
        self._known_outputs: set[str] = set()
        self._in_flight: deque[Batch] = deque()
        self.stopping = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        """Route until ``stopping`` is set; then leave the group (committing what is done)."""
        try:
            self._wait_for_grants()
            self._consumer.subscribe(
                [self._pattern], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            next_look = time.monotonic() + self._discovery_interval
            while not self.stopping.is_set():
                messages = self._take()
                records = [m for m in messages if self._is_record(m)]
                if records:
                    self._send_batch(records)
                full = len(self._in_flight) >= IN_FLIGHT
                self._settle(block=full or (not records and bool(self._in_flight)))
                if self._paused and time.monotonic() >= next_look:
                    self._resume_known()
                    next_look = time.monotonic() + self._discovery_interval
            self._settle_all()
        finally:
            self._consumer.close()
            self.finished.set()

    def stop(self) -> None:
        self.stopping.set()

    def _take(self) -> list[Message]:
        """The next batch: what librdkafka has fetched, up to ``BATCH`` records. With batches
        in flight it does not wait (their reports are to be served); else it waits up to
        ``BATCH_WAIT`` for the first record only, never for a batch to fill (``consume``
        would wait out its whole timeout for fewer than ``BATCH`` records)."""
        consumer = self._consumer
        if self._in_flight:
            return consumer.consume(BATCH, 0)
        first = consumer.poll(BATCH_WAIT)
        if first is None:
            return []
        return [first, *consumer.consume(BATCH - 1, 0)]

    def _wait_for_grants(self) -> None:
        if self._ready is None:
            return
        if not self._ready.wait(GRANTS_WAIT):
            log.warning(
                "grants not read to their end within %.0fs; going on with what is known",
                GRANTS_WAIT,
            )

    @staticmethod
    def _is_record(message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("reading the source topics: %s", error)
        return False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions added to this worker's (incremental: the others stay as they were)."""
        # A partition this worker held before may have been extended by another since.
        self._chains.forget()
        unknown = [p for p in partitions if not self._sources.can_route(p.topic)]
        # librdkafka keeps a pause across a revoke and a new assignment: a partition held
        # while its dataset was unknown would come back held, with nothing left to resume it.
        consumer.resume([p for p in partitions if self._sources.can_route(p.topic)])
        if unknown:
            consumer.pause(unknown)
            self._paused.update((p.topic, p.partition) for p in unknown)
            names = sorted({p.topic for p in unknown})
            log.warning("source topics without a registered dataset, held: %s", names)
        self._assigned.update((p.topic, p.partition) for p in partitions)
        ENGINE_PARTITIONS.set(len(self._assigned - self._paused))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken from this worker (the others stay)."""
        # What is in flight is settled, and its offsets stored, before the partitions go.
        self._settle_all()
        self._chains.forget()
        gone = {(p.topic, p.partition) for p in partitions}
        self._paused -= gone
        self._assigned -= gone
        ENGINE_PARTITIONS.set(len(self._assigned - self._paused))

    def _resume_known(self) -> None:
        ready = [tp for tp in self._paused if self._sources.can_route(tp[0])]
        if ready:
            self._consumer.resume([TopicPartition(t, p) for t, p in ready])
            self._paused.difference_update(ready)
            ENGINE_PARTITIONS.set(len(self._assigned - self._paused))

    def _send_batch(self, records: list[Message]) -> None:
        """Route one batch and hand its writes to the producer."""
        batch = Batch(records, time.perf_counter())
        self._chains.prepare(batch.touched)
        routings = self._route_until_done(records)
        if routings is None:  # stopping during a registry outage: nothing is stored
            return
        outputs = [o for r in routings for o in r.outputs]
        self._ensure_topics(outputs)
        router = self._router
        batch.counts, router.counts = router.counts, Counter()
        self._writer.send(outputs, batch)
        self._in_flight.append(batch)

    def _settle(self, *, block: bool) -> None:
        """Store the offsets of the batches at the front whose writes are all acknowledged,
        in order; with ``block``, wait until at least one is."""
        writer, in_flight = self._writer, self._in_flight
        writer.serve(0)
        while in_flight:
            front = in_flight[0]
            if front.outstanding > 0 and not front.refused:
                if not block:
                    return
                if time.monotonic() - front.sent < WRITE_TIMEOUT:
                    writer.serve(0.01)
                    continue
                front.refused.append(f"{front.outstanding} unacknowledged after {WRITE_TIMEOUT:g}s")
            if front.refused:
                self._go_back()
                return
            in_flight.popleft()
            self._store(front.ends)
            for child, count in front.counts.items():
                child.inc(count)
            ENGINE_LATENCY.observe(time.perf_counter() - front.started)
            block = False

    def _settle_all(self) -> None:
        """Wait for every batch in flight and settle them all."""
        if self._in_flight:
            self._writer.flush(WRITE_TIMEOUT)
            self._settle(block=False)
            if self._in_flight:  # what was not acknowledged in time
                self._go_back()

    def _go_back(self) -> None:
        """Kafka refused a write of a batch in flight: wait for the others, then route every
        batch not yet settled again from its first offsets. Some of their audit records may
        be written, some not: their chains' heads are read back from the topic before they
        are extended again."""
        self._writer.flush(WRITE_TIMEOUT)
        batches, self._in_flight = list(self._in_flight), deque()
        refused = [r for b in batches for r in b.refused]
        ENGINE_WRITES_REFUSED.inc(len(refused))
        log.error(
            "Kafka did not take the writes of %d batch(es) (%d refused: %s); they are routed again",
            len(batches),
            len(refused),
            "; ".join(refused[:3]),
        )
        starts: dict[tuple[str, int], int] = {}
        for batch in batches:
            self._chains.forget(batch.touched)
            for where, offset in batch.starts.items():
                starts.setdefault(where, offset)
        for (topic, partition), offset in starts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("cannot go back to %s[%d]@%d: %s", topic, partition, offset, exc)
        self.stopping.wait(1.0)

    def _route_until_done(self, records: Sequence[Message]) -> list[Routing] | None:
        """Route a batch; while the registry is unavailable, wait and try again (with growing
        pauses) instead of dead-lettering good events: the batch's offsets are not stored
        meanwhile, and the audit records it sealed are dropped with the chains' heads put
        back."""
        delay = 0.5
        mark = self._chains.mark()
        route = self._router.route
        while True:
            try:
                return [
                    route(m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value())
                    for m in records
                ]
            except RegistryUnavailable as exc:
                self._chains.restore(mark)
                self._router.counts.clear()  # counted again when routed again
                log.warning("%s; trying again in %.1fs", exc, delay)
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 30.0)

    def _ensure_topics(self, outputs: list[Output]) -> None:
        """The subscribers' topics, and their dead-letter topics (one partition: a few
        letters, read in order), made on first write."""
        missing = {
            o.topic for o in outputs if o.topic.startswith(DELIVERY_PREFIX)
        } - self._known_outputs
        if missing:
            ensure_topics(
                self._settings, {t: 1 if t.endswith("._dead_letters") else 3 for t in missing}
            )
            self._known_outputs.update(missing)

    def _store(self, ends: dict[tuple[str, int], int]) -> None:
        """Store the next offset of every partition of a settled batch, to be committed."""
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()]
            )
        except KafkaException as exc:
            # The partitions went to another worker meanwhile (a long registry outage): it
            # routes them again from their last commit, at least once.
            log.warning("offsets not stored, the batch will be routed again: %s", exc)
