"""The CDC bridge (``xbus run cdc-bridge``): Debezium's records of each source's ``cdc.*``
topic republished as its dataset's change events through the Publisher SDK, so that records
captured from a database are validated, encoded with the registered schema, keyed, given
ids and counted exactly as those a department publishes itself.

At least once, nothing lost: a batch's offsets are committed only after Kafka acknowledged
every event made from it (and every dead letter). When Kafka does not acknowledge, the bridge
goes back to the first record of the batch not committed and tries again; the events it
publishes twice carry the same ids (``RowMapper``), so subscribers apply each once. A record
that cannot become a valid event goes to the department's CDC dead letters
(``cdc.<department>._dead_letters``) with the reason and the original bytes; the stream goes
on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.errors import XbusError
from xbus.core.headers import (
    DLQ_ERROR,
    DLQ_ERROR_LIMIT,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
)
from xbus.core.metrics import (
    CDC_COMMIT_TO_PUBLISH,
    CDC_EVENTS_BRIDGED,
    CDC_EVENTS_REJECTED,
    CDC_LAG,
)
from xbus.core.producing import produce
from xbus.core.settings import BusSettings
from xbus.core.topics import cdc_dead_letter_topic
from xbus.producers.cdc.mapping import Rejection, RowMapper
from xbus.producers.cdc.sources import CdcSource
from xbus.producers.exceptions import InvalidRecord, PublishError, RecordTooLarge
from xbus.producers.publisher import Publisher, Receipt

log = logging.getLogger(__name__)

GROUP = "xbus-cdc-bridge"
"""The bridge's consumer group; bridges in it share the sources' partitions."""


@dataclass
class _Route:
    """One source: how its records map, and who publishes them."""

    source: CdcSource
    mapper: RowMapper
    publisher: Publisher
    last_ts_ms: int = 0


@dataclass
class _Batch:
    """What one batch produced, to wait for before its offsets are committed."""

    events: list[tuple[_Route, str, Future[Receipt], int | None]] = field(default_factory=list)
    dead_letters: list[Future[None]] = field(default_factory=list)
    first: dict[tuple[str, int], int] = field(default_factory=dict)
    next: dict[tuple[str, int], int] = field(default_factory=dict)


class Retry(XbusError):
    """Kafka did not take a batch's events now; the batch is read again."""

    retriable = True


class CdcBridge:
    """Consumes every source's ``cdc.*`` topic and publishes its dataset's events."""

    def __init__(
        self,
        sources: Iterable[CdcSource],
        settings: BusSettings,
        catalog: Catalog,
        *,
        batch_size: int = 2000,
        batch_wait: float = 0.02,
        group: str = GROUP,
        retry_backoff: float = 1.0,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.retry_backoff = retry_backoff
        self._routes: dict[str, _Route] = {}
        secret = settings.pseudonym_secret()  # keys the event ids (RowMapper)
        for source in sources:
            dataset = catalog.get(source.department, source.dataset)
            publisher = Publisher(
                source.department,
                system=f"{source.database.name}.{source.table}",
                settings=settings,
                catalog=catalog,
                origin="cdc",
            )
            self._routes[source.topic] = _Route(
                source, RowMapper(source, dataset, secret), publisher
            )
        # Where what cannot be republished goes (provisioning makes them; else made here).
        ensure_topics(
            settings, {cdc_dead_letter_topic(r.source.department): 1 for r in self._routes.values()}
        )
        self._consumer = Consumer(
            settings.consumer_config(
                group, **{"partition.assignment.strategy": "cooperative-sticky"}
            )
        )
        self._dead_letters = Producer(settings.producer_config())
        self._last_lag = 0.0
        self._positions: dict[tuple[str, int], int] = {}

    # -- one batch ---------------------------------------------------------------------------

    def _dead_letter(
        self, route: _Route, message: Message, reason: str, error: str
    ) -> Future[None]:
        """Queue the original record on the department's CDC dead letters."""
        future: Future[None] = Future()
        source = route.source

        def on_delivery(err: KafkaError | None, _: Message) -> None:
            if err is None:
                CDC_EVENTS_REJECTED.labels(source.department, source.dataset, reason).inc()
                future.set_result(None)
            else:
                future.set_exception(Retry(f"dead letter not written: {err.str()}"))

        produce(
            self._dead_letters,
            cdc_dead_letter_topic(source.department),
            message.value(),
            message.key(),
            headers=[
                (DLQ_REASON, reason),
                (DLQ_ERROR, error[:DLQ_ERROR_LIMIT]),
                (DLQ_TOPIC, message.topic() or ""),
                (DLQ_PARTITION, str(message.partition())),
                (DLQ_OFFSET, str(message.offset())),
            ],
            on_delivery=on_delivery,
        )
        self._dead_letters.poll(0)
        return future

    def _publish(self, messages: list[Message], batch: _Batch) -> None:
        """Queue each record's event (or dead letter) into ``batch``; raise ``Retry`` if the
        bus cannot take them now (the registry away, the dataset not registered yet)."""
        for message in messages:
            topic = message.topic() or ""
            route = self._routes.get(topic)
            if route is None:  # not a source of this bridge
                continue
            event = route.mapper.event(topic, message.key(), message.value())
            if not isinstance(event, Rejection) and event.ts_ms is not None:
                # Event time never goes back within a source: a snapshot's rows carry the time
                # they were read, which may be after the commit of a change captured next, and
                # sinks keep the later of two versions of a row by event time.
                ts_ms = max(event.ts_ms, route.last_ts_ms)
                event = replace(event, ts_ms=ts_ms)
                route.last_ts_ms = ts_ms
            if isinstance(event, Rejection):
                batch.dead_letters.append(
                    self._dead_letter(route, message, event.reason, event.message)
                )
                continue
            try:
                future = route.publisher.publish(
                    route.source.dataset,
                    event.op,
                    after=event.after,
                    before=event.before,
                    ts_ms=event.ts_ms,
                    event_id=event.event_id,
                    trace_id=event.trace_id,
                )
            except (InvalidRecord, RecordTooLarge) as exc:
                batch.dead_letters.append(self._dead_letter(route, message, exc.reason, str(exc)))
                continue
            except PublishError as exc:  # the record is fine; the bus cannot take it now
                raise Retry(f"{route.source.name}: {exc}") from exc
            except Exception as exc:  # a value the SDK chokes on: this record's fault only
                log.exception("CDC bridge: %s offset %s", topic, message.offset())
                batch.dead_letters.append(
                    self._dead_letter(
                        route, message, "unpublishable", f"{type(exc).__name__}: {exc}"
                    )
                )
                continue
            committed = None if event.op is Op.SNAPSHOT else event.ts_ms
            batch.events.append((route, event.op.value, future, committed))

    def _settle(self, batch: _Batch) -> None:
        """Wait for every acknowledgement of ``batch``; raise ``Retry`` if one is missing."""
        self._dead_letters.flush(0)
        deadline = time.monotonic() + self._ack_timeout
        for route, op, future, committed in batch.events:
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except (PublishError, TimeoutError) as exc:  # a future's timeout is TimeoutError
                raise Retry(f"{route.source.name}: {exc or 'no acknowledgement in time'}") from exc
            source = route.source
            CDC_EVENTS_BRIDGED.labels(source.department, source.dataset, op).inc()
            if committed:
                CDC_COMMIT_TO_PUBLISH.labels(source.department, source.dataset).observe(
                    max(0.0, time.time() - committed / 1000)
                )
        for letter in batch.dead_letters:
            while not letter.done() and time.monotonic() < deadline:
                self._dead_letters.poll(0.05)
            if not letter.done():
                raise Retry("dead letters not acknowledged in time")
            letter.result()

    @property
    def _ack_timeout(self) -> float:
        """How long a batch may wait for Kafka's acknowledgements."""
        return max(r.publisher.acknowledgement_timeout for r in self._routes.values())

    def _commit(self, batch: _Batch) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next.items()]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Partitions given to another bridge meanwhile: it publishes them again from the
            # last commit, with the same event ids.
            log.warning("CDC bridge: offsets not committed (%s); they will be read again", exc)
            return
        for (t, p), o in batch.next.items():
            self._positions[(t, p)] = o

    def _rewind(self, batch: _Batch) -> None:
        """Read ``batch`` again from its first record (of each partition)."""
        for (topic, partition), offset in batch.first.items():
            # One no longer assigned: its next owner starts from the committed offset.
            with contextlib.suppress(KafkaException):
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def step(self) -> int:
        """Read, publish and commit one batch; the number of records it held."""
        # consume() returns once the batch is full or the wait is over: a long wait would
        # hold every change of a quiet table that long (0.5 s made commit → gov.* 300 ms at
        # p50). Under load batches fill at once anyway.
        records = self._consumer.consume(self.batch_size, self.batch_wait)
        messages = [m for m in records if self._usable(m)]
        if messages:
            batch = _Batch()
            # Where each partition's part of the batch starts and ends, before anything can
            # fail: a batch read again starts where this one did.
            for message in messages:
                where = (message.topic() or "", message.partition() or 0)
                batch.first.setdefault(where, message.offset() or 0)
                batch.next[where] = (message.offset() or 0) + 1
            try:
                self._publish(messages, batch)
                self._settle(batch)
            except Retry as exc:
                log.warning(
                    "CDC bridge: %s; reading the batch again in %.0fs", exc, self.retry_backoff
                )
                self._rewind(batch)
                time.sleep(self.retry_backoff)
                return 0
            self._commit(batch)
        self._report_lag()
        return len(messages)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("CDC bridge: %s", error)
        return False

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 1.0:
            return
        self._last_lag = now
        try:
            assignment = self._consumer.assignment()
        except KafkaException:
            return
        for tp in assignment:
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            route = self._routes.get(tp.topic)
            done = self._positions.get((tp.topic, tp.partition))
            if route is None or high < 0 or done is None:
                continue
            CDC_LAG.labels(route.source.department, route.source.dataset, tp.partition).set(
                max(0, high - done)
            )

    # -- running -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set, then close."""
        self._consumer.subscribe(list(self._routes))
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        """Wait for what is in flight, leave the group and close the publishers."""
        try:
            self._consumer.close()
        finally:
            self._dead_letters.flush(10)
            for route in self._routes.values():
                route.publisher.close()
