"""The engine's hot path: one librdkafka consumer in the engine's group, subscribed by
pattern to every ``gov.*`` topic, routing its records in batches.

Per batch: consume up to ``BATCH`` records, route them all (``xbus.streams.routing``), write
every output with one idempotent producer, wait until Kafka acknowledged each write, and only
then store the batch's offsets for commit (at least once). Everything runs on one thread, so
a rebalance (served inside ``consume``) never finds a batch half done: what was consumed
before it is written and its offsets stored, and librdkafka commits them as it gives the
partitions up.

A ``gov.*`` topic whose dataset the engine does not know is looked up in the registry when
it is assigned; until its dataset is registered its partitions stay paused (nothing of them
is read, so nothing of them is skipped), and they are resumed once it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Dataset
from xbus.core.errors import RegistryUnavailable, Unacknowledged
from xbus.core.metrics import ENGINE_LATENCY, ENGINE_PARTITIONS, EVENTS_DELIVERED
from xbus.core.settings import BusSettings
from xbus.core.topics import DELIVERY_PREFIX, SOURCE_PREFIX, parse_source_topic
from xbus.streams.audit import AuditChains, chain_of
from xbus.streams.routing import Output, Router, Routing, metric_child

log = logging.getLogger(__name__)

SOURCES_PATTERN = "^" + SOURCE_PREFIX.replace(".", "\\.")
BATCH = 1000
BATCH_WAIT = 0.05
GRANTS_WAIT = 60.0


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
        write: Callable[[list[Output]], None],
        *,
        ready: threading.Event | None = None,
        discovery_interval: float = 10.0,
    ) -> None:
        self._settings, self._router, self._chains = settings, router, chains
        self._sources, self._write_outputs, self._ready = sources, write, ready
        self._discovery_interval = discovery_interval
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
                }
            )
        )
        self._paused: set[tuple[str, int]] = set()
        self._known_outputs: set[str] = set()
        self.stopping = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        """Route until ``stopping`` is set; then leave the group (committing what is done)."""
        try:
            self._wait_for_grants()
            self._consumer.subscribe(
                [SOURCES_PATTERN], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            next_look = time.monotonic() + self._discovery_interval
            while not self.stopping.is_set():
                messages = self._consumer.consume(BATCH, BATCH_WAIT)
                records = [m for m in messages if self._is_record(m)]
                if records:
                    self._route_batch(records)
                if self._paused and time.monotonic() >= next_look:
                    self._resume_known()
                    next_look = time.monotonic() + self._discovery_interval
        finally:
            self._consumer.close()
            self.finished.set()

    def stop(self) -> None:
        self.stopping.set()

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
        # A partition this worker held before may have been extended by another since.
        self._chains.forget()
        unknown = [p for p in partitions if not self._sources.can_route(p.topic)]
        if unknown:
            consumer.pause(unknown)
            self._paused.update((p.topic, p.partition) for p in unknown)
            names = sorted({p.topic for p in unknown})
            log.warning("source topics without a registered dataset, held: %s", names)
        ENGINE_PARTITIONS.set(len(partitions) - len(unknown))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._chains.forget()
        self._paused.clear()
        ENGINE_PARTITIONS.set(0)

    def _resume_known(self) -> None:
        ready = [tp for tp in self._paused if self._sources.can_route(tp[0])]
        if ready:
            self._consumer.resume([TopicPartition(t, p) for t, p in ready])
            self._paused.difference_update(ready)
            ENGINE_PARTITIONS.inc(len(ready))

    def _route_batch(self, records: list[Message]) -> None:
        """Route, write and store the offsets of one batch; on a write Kafka did not
        acknowledge, go back to the batch's first offsets and route it again."""
        started = time.perf_counter()
        touched = {chain_of(m.topic() or "", m.partition() or 0) for m in records}
        self._chains.prepare(touched)
        routings = self._route_until_done(records)
        if routings is None:  # stopping during a registry outage: nothing is stored
            return
        try:
            self._write(routings)
        except Unacknowledged as exc:
            # Some of the batch's audit records may be written, some not: its chains' heads
            # are read back from the topic before they are extended again.
            self._chains.forget(touched)
            self._router.counts.clear()  # counted again when routed again
            log.error("%s; the batch is routed again", exc)
            self._rewind(records)
            self.stopping.wait(1.0)
            return
        self._store(records)
        self._router.flush_metrics()
        elapsed = time.perf_counter() - started
        delivered: dict[tuple[str, str], int] = {}
        for routing in routings:
            for grant, _ in routing.deliveries:
                labels = (grant.grant.subscriber, grant.dataset.name)
                delivered[labels] = delivered.get(labels, 0) + 1
        for (subscriber, dataset), count in delivered.items():
            metric_child(EVENTS_DELIVERED, subscriber, dataset, "topic").inc(count)
        ENGINE_LATENCY.observe(elapsed)

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

    def _write(self, routings: list[Routing]) -> None:
        outputs = [o for r in routings for o in r.outputs]
        # The subscribers' topics, and their dead-letter topics (one partition: a few
        # letters, read in order), made on first write.
        missing = {
            o.topic for o in outputs if o.topic.startswith(DELIVERY_PREFIX)
        } - self._known_outputs
        if missing:
            ensure_topics(
                self._settings, {t: 1 if t.endswith("._dead_letters") else 3 for t in missing}
            )
            self._known_outputs.update(missing)
        self._write_outputs(outputs)

    def _store(self, records: list[Message]) -> None:
        """Store the next offset of every partition of the batch, to be committed."""
        ends: dict[tuple[str, int], int] = {}
        for m in records:
            ends[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()]
            )
        except KafkaException as exc:
            # The partitions went to another worker meanwhile (a long registry outage): it
            # routes them again from their last commit, at least once.
            log.warning("offsets not stored, the batch will be routed again: %s", exc)

    def _rewind(self, records: list[Message]) -> None:
        starts: dict[tuple[str, int], int] = {}
        for m in records:
            starts.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        for (topic, partition), offset in starts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("cannot go back to %s[%d]@%d: %s", topic, partition, offset, exc)
