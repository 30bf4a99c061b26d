"""The connector runtime: consumes a subscriber's ``deliver.*`` topics and hands each batch to
a sink (webhook, PostgreSQL, file), committing offsets only once the sink has it.

An unavailable target (timeout, refused connection, 5xx, 429, a registry that does not
answer) is not a bad record: the runtime pauses the partitions, keeps the one batch in hand
and tries it again with exponential backoff and jitter, so memory stays bounded by one batch
and librdkafka's small prefetch. A delivery the target refuses for good, or bytes that are not
a subscriber view, go to the subscriber's dead-letter topic with the reason and the original
bytes, and the stream goes on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from xbus.consumers.delivery import Delivery, carries_record, decode, message_headers
from xbus.consumers.exceptions import DeliveryRefused, TargetUnavailable
from xbus.consumers.sinks.base import Position, Sink
from xbus.core import headers
from xbus.core.errors import RegistryUnavailable
from xbus.core.metrics import (
    CONNECTOR_DEAD_LETTERS,
    CONNECTOR_FAILURES,
    CONNECTOR_LAG,
    CONNECTOR_OLDEST_UNDELIVERED,
    CONNECTOR_PAUSED,
    CONNECTOR_RETRIES,
    END_TO_END_LATENCY,
    EVENTS_DELIVERED,
)
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.serde import Undecodable, WriterSchemas, registry_client
from xbus.core.settings import BusSettings
from xbus.core.topics import (
    delivery_topics_pattern,
    parse_delivery_topic,
    subscriber_dead_letter_topic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th retry waits between half and all of
    ``min(maximum, initial * 2**(n-1))``, or what the target asked for (Retry-After)."""

    initial: float = 0.2
    maximum: float = 30.0
    longest_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.longest_retry_after)
        ceiling = min(self.maximum, self.initial * 2 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))


DeliveredHook = Callable[[Delivery], None]


@dataclass(frozen=True)
class DeadLetter:
    """A record the subscriber's endpoint will never take, with why and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str
    detail: str

    @classmethod
    def of_delivery(cls, d: Delivery, reason: str, detail: str) -> DeadLetter:
        return cls(d.topic, d.partition, d.offset, d.key, d.value, d.headers, reason, detail)

    @classmethod
    def of_message(cls, m: Message, reason: str, detail: str) -> DeadLetter:
        headers = message_headers(m)
        return cls(
            m.topic() or "",
            m.partition() or 0,
            m.offset() or 0,
            m.key(),
            m.value(),
            headers,
            reason,
            detail,
        )


class Connector:
    """Runs one sink for one or more subscribers until stopped."""

    def __init__(
        self,
        settings: BusSettings,
        subscribers: Sequence[str],
        sink: Sink,
        *,
        group_id: str | None = None,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        on_delivered: DeliveredHook | None = None,
    ) -> None:
        self.subscribers = sorted(subscribers)
        self.sink = sink
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self._who = "+".join(self.subscribers)
        self._on_delivered = on_delivered
        self._schemas = WriterSchemas(registry_client(settings))
        self.group_id = group_id or f"xbus-{sink.connector}-" + "+".join(self.subscribers)
        self._consumer = Consumer(
            settings.consumer_config(
                self.group_id,
                **{
                    "topic.metadata.refresh.interval.ms": 5000,
                    # Bounded memory: librdkafka prefetches at most this much per partition set.
                    "queued.max.messages.kbytes": 8192,
                    "fetch.wait.max.ms": 50,
                    # A killed connector's partitions move to its replacement after this long.
                    "session.timeout.ms": 10000,
                    "heartbeat.interval.ms": 2000,
                },
            )
        )
        self._dead_letters = Producer(settings.producer_config(**{"linger.ms": 0}))
        self._paused = False
        self._revoked = False
        self._next: dict[Position, int] = {}
        self._last_lag_report = 0.0

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (SIGTERM): the batch in hand is finished or left
        uncommitted, then the sink and the consumer are closed."""
        self._consumer.subscribe(
            [delivery_topics_pattern(s) for s in self.subscribers],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        try:
            while not stop.is_set():
                messages = self._next_batch()
                if messages:
                    self._process(messages, stop)
                self._report_lag()
        finally:
            self.close()

    def _next_batch(self) -> list[Message]:
        # Wait for the first message only; then take what is already fetched, so a quiet
        # topic does not hold an event back waiting for a full batch.
        first = self._consumer.poll(0.5)
        if first is None:
            return []
        rest = self._consumer.consume(self.batch_size - 1, timeout=0) if self.batch_size > 1 else []
        return [m for m in [first, *rest] if carries_record(m, log, self._who)]

    def _process(self, messages: list[Message], stop: threading.Event) -> None:
        waiting = self._hold(messages)
        try:
            self._deliver(messages, stop)
        finally:
            for subscriber in waiting:
                CONNECTOR_OLDEST_UNDELIVERED.labels(subscriber, self.sink.connector).set(0)

    def _hold(self, messages: list[Message]) -> list[str]:
        """Export when the engine wrote the oldest event of the batch now in hand, per
        subscriber, and return those subscribers. The batch starts at each partition's next
        undelivered offset, so its oldest record is the oldest the connector has not
        delivered; while a target is down the batch stays in hand and its age keeps growing.
        One pass over the batch's timestamps: nothing per event beyond that."""
        oldest: dict[str, int] = {}
        for m in messages:
            written = m.timestamp()[1]
            topic = m.topic() or ""
            if written > 0 and written < oldest.get(topic, written + 1):
                oldest[topic] = written
        per_subscriber: dict[str, int] = {}
        for topic, written in oldest.items():
            subscriber, _ = parse_delivery_topic(topic)
            per_subscriber[subscriber] = min(written, per_subscriber.get(subscriber, written))
        for subscriber, written in per_subscriber.items():
            CONNECTOR_OLDEST_UNDELIVERED.labels(subscriber, self.sink.connector).set(written / 1000)
        return list(per_subscriber)

    def _deliver(self, messages: list[Message], stop: threading.Event) -> None:
        self._revoked = False
        batch: list[Delivery] | None = None
        attempt = 0
        while True:
            try:
                if batch is None:
                    batch = self._decode(messages)
                refused = self.sink.deliver(batch) if batch else []
                self._delivered(batch, refused)
                self._dead_letter([DeadLetter.of_delivery(d, r.reason, str(r)) for d, r in refused])
                break
            except TargetUnavailable as exc:
                assert batch is not None
                done, batch = batch[: exc.done], batch[exc.done :]
                self._delivered(done, exc.refused)
                self._dead_letter(
                    [DeadLetter.of_delivery(d, r.reason, str(r)) for d, r in exc.refused]
                )
                reason, retry_after, detail = exc.reason, exc.retry_after, str(exc)
            except RegistryUnavailable as exc:
                reason, retry_after, detail = "registry_unavailable", None, str(exc)
            attempt += 1
            self._fail(reason, detail, attempt)
            if not self._wait(self.retry.delay(attempt, retry_after), stop):
                # Stopping, or a rebalance took the partitions: whoever reads them next
                # starts from the last commit, so the batch in hand is dropped, not lost.
                log.info("leaving %d undelivered events uncommitted", len(messages))
                self._unpause()
                return
            CONNECTOR_RETRIES.labels(self._who, self.sink.connector).inc()
        if self._paused:
            self._unpause()
            log.info("%s is reachable again; delivering", self.sink.connector)
        self._commit(messages)

    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            self._consumer.resume(self._consumer.assignment())
            CONNECTOR_PAUSED.labels(self._who, self.sink.connector).set(0)

    def _decode(self, messages: list[Message]) -> list[Delivery]:
        batch: list[Delivery] = []
        bad: list[DeadLetter] = []
        for message in messages:
            try:
                batch.append(decode(message, self._schemas))
            except Undecodable as exc:
                bad.append(DeadLetter.of_message(message, exc.reason, str(exc)))
        self._dead_letter(bad)
        return batch

    def _delivered(
        self, batch: list[Delivery], refused: list[tuple[Delivery, DeliveryRefused]]
    ) -> None:
        refused_ids = {id(d) for d, _ in refused}
        now = time.time()
        for d in batch:
            self._next[(d.topic, d.partition)] = d.offset + 1
            if id(d) in refused_ids:
                continue
            EVENTS_DELIVERED.labels(d.subscriber, d.dataset, self.sink.connector).inc()
            END_TO_END_LATENCY.labels(d.subscriber, self.sink.connector).observe(
                max(0.0, now - d.event_time.timestamp())
            )
            if self._on_delivered is not None:
                self._on_delivered(d)

    def _fail(self, reason: str, detail: str, attempt: int) -> None:
        subscriber = self._who
        CONNECTOR_FAILURES.labels(subscriber, self.sink.connector, reason).inc()
        if not self._paused:
            self._paused = True
            self._consumer.pause(self._consumer.assignment())
            CONNECTOR_PAUSED.labels(subscriber, self.sink.connector).set(1)
        log.warning(
            "%s unavailable (%s, attempt %d): %s; partitions paused, retrying",
            self.sink.connector,
            reason,
            attempt,
            detail,
        )

    def _wait(self, delay: float, stop: threading.Event) -> bool:
        """Wait ``delay`` seconds, serving the consumer (heartbeats, rebalances); False if
        stopped or the partitions were taken away meanwhile."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if stop.is_set() or self._revoked:
                return False
            message = self._consumer.poll(min(left, 0.2))
            if message is not None and message.error() is None:
                # From a partition assigned during the pause: read it again later.
                self._consumer.seek(
                    TopicPartition(
                        message.topic() or "", message.partition() or 0, message.offset() or 0
                    )
                )
        return not (stop.is_set() or self._revoked)

    def _commit(self, messages: list[Message]) -> None:
        offsets: dict[Position, int] = {}
        for m in messages:
            position = (m.topic() or "", m.partition() or 0)
            offsets[position] = max(offsets.get(position, 0), (m.offset() or 0) + 1)
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # A rebalance took the partitions: the new owner starts from the last commit
            # (or the sink's own position) and may deliver these again; at least once holds.
            log.warning("commit failed, events may be delivered again: %s", exc)

    # -- dead letters ----------------------------------------------------------------------------

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Write each letter to its subscriber's dead-letter topic and wait for Kafka's
        acknowledgement; raise ``Unacknowledged`` rather than commit past a record Kafka did
        not take."""
        if not letters:
            return
        records = []
        for letter in letters:
            subscriber, _ = parse_delivery_topic(letter.topic)
            CONNECTOR_DEAD_LETTERS.labels(subscriber, self.sink.connector, letter.reason).inc()
            log.warning(
                "dead letter: %s[%s]@%s for %s: %s (%s)",
                letter.topic,
                letter.partition,
                letter.offset,
                subscriber,
                letter.reason,
                letter.detail,
            )
            records.append(
                Record(
                    subscriber_dead_letter_topic(subscriber),
                    letter.value,
                    letter.key,
                    [
                        *letter.headers,
                        (headers.DLQ_REASON, letter.reason.encode()),
                        (headers.DLQ_ERROR, letter.detail.encode()[: headers.DLQ_ERROR_LIMIT]),
                        (headers.DLQ_CONNECTOR, self.sink.connector.encode()),
                        (headers.DLQ_TOPIC, letter.topic.encode()),
                        (headers.DLQ_PARTITION, str(letter.partition).encode()),
                        (headers.DLQ_OFFSET, str(letter.offset).encode()),
                    ],
                )
            )
        produce_and_confirm(
            self._dead_letters, records, timeout=60, what=f"{len(records)} dead letter(s)"
        )

    # -- assignment and lag ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        kept = self.sink.positions([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            if (tp.topic, tp.partition) in kept:
                tp.offset = kept[(tp.topic, tp.partition)]
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause across a revoke and a new assignment: one paused
        # during an outage comes back paused even when the outage ended between the revoke and
        # this call (then nothing resumes it and its events wait for a restart). Set both ways.
        if self._paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked = True
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_report < 1.0:
            return
        self._last_lag_report = now
        for tp in self._consumer.assignment():
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            done = self._next.get((tp.topic, tp.partition))
            if high < 0 or done is None:
                continue
            subscriber, _ = parse_delivery_topic(tp.topic)
            CONNECTOR_LAG.labels(subscriber, self.sink.connector, tp.topic, tp.partition).set(
                max(0, high - done)
            )

    def close(self) -> None:
        """Close the sink and leave the consumer group."""
        try:
            self.sink.close()
        finally:
            self._consumer.close()
            self._dead_letters.flush(10)
