"""One client's feed of the live stream: a Kafka consumer of its subscriber's ``deliver.*``
topics, in a thread of its own, turning events into SSE frames that carry resume ids.

The consumer is assigned partitions by hand (no consumer group, nothing committed): where it
starts comes from the client's resume id, or from the live end (or the beginning) for a new
client. Frames reach the event loop in chunks through a hand-off of a few chunks at most, so
a client that takes nothing holds a bounded amount of memory, and a slow client slows only its
own consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from xbus.consumers.delivery import Delivery, carries_record, decode
from xbus.consumers.sse.ids import Positions, ResumeIds
from xbus.core.errors import RegistryUnavailable
from xbus.core.serde import Undecodable, WriterSchemas
from xbus.core.settings import BusSettings
from xbus.core.topics import delivery_topic, delivery_topics_pattern, parse_delivery_topic
from xbus.core.values import to_json

log = logging.getLogger(__name__)

# What a client waits before reconnecting after a dropped connection (the SSE ``retry``).
RECONNECT_MS = 2000
REGISTRY_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Chunk:
    """SSE frames ready to send, and the (dataset, event time in epoch seconds) of each event
    among them, for the metrics."""

    body: bytes
    events: list[tuple[str, float]]


@dataclass(frozen=True)
class FeedFailed:
    """The feed stopped and will send nothing more; ``reason`` says why."""

    reason: str


@dataclass(frozen=True)
class Start:
    """Where a feed starts: at ``positions`` (a resume id's), else at the live end, or at the
    beginning if ``earliest``. A partition the positions do not name starts at its beginning."""

    positions: Positions | None = None
    earliest: bool = False


@dataclass(frozen=True)
class FeedOptions:
    """How often a feed looks for new topics, and how much it reads and holds at once."""

    discovery_interval: float = 5.0
    batch_size: int = 500
    chunks_held: int = 4


def event_frame(resume_id: str, delivery: Delivery) -> str:
    """One SSE message: the resume id, the dataset as event type, the event as one JSON line."""
    event = delivery.event
    data = to_json(
        {
            "event_id": delivery.event_id,
            "dataset": delivery.dataset,
            "key": delivery.key_text,
            "op": event["op"],
            "ts_ms": event["ts_ms"],
            "before": event.get("before"),
            "after": event.get("after"),
        }
    )
    return f"id: {resume_id}\nevent: {delivery.dataset}\ndata: {data}\n\n"


def position_frame(resume_id: str) -> str:
    """A message with only an id (and the reconnection delay): it sets the client's
    Last-Event-ID without an event, so a client that has seen nothing yet can resume too."""
    return f"retry: {RECONNECT_MS}\nid: {resume_id}\n\n"


class ClientFeed:
    """The stream of one client. Create it on the event loop, ``start()`` it, take chunks with
    ``next()``, and ``close()`` it when the client goes."""

    def __init__(
        self,
        settings: BusSettings,
        schemas: WriterSchemas,
        ids: ResumeIds,
        subscriber: str,
        datasets: frozenset[str] | None,
        start: Start,
        options: FeedOptions,
    ) -> None:
        self.subscriber = subscriber
        self._datasets = datasets
        self._start = start
        self._schemas = schemas
        self._ids = ids
        self._options = options
        self._pattern = re.compile(delivery_topics_pattern(subscriber))
        self._config = settings.consumer_config(
            f"xbus-sse-{subscriber}",  # never joined: partitions are assigned by hand
            **{
                "client.id": f"xbus-sse-{subscriber}",
                "enable.auto.offset.store": False,
                # Bounded memory per client: librdkafka prefetches at most this much.
                "queued.max.messages.kbytes": 2048,
                "fetch.wait.max.ms": 50,
            },
        )
        self._loop = asyncio.get_running_loop()
        self._items: deque[Chunk | FeedFailed] = deque()
        self._arrived = asyncio.Event()
        self._ended = asyncio.Event()
        self._slots = threading.Semaphore(options.chunks_held)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sse-{subscriber}", daemon=True)

    # -- the event loop's side -------------------------------------------------------------------

    def start(self) -> None:
        """Start reading in the feed's own thread."""
        self._thread.start()

    async def next(self, timeout: float) -> Chunk | FeedFailed | None:
        """The next chunk, or why the feed stopped; None if nothing came within ``timeout``
        seconds."""
        if not self._items:
            self._arrived.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
            except TimeoutError:
                return None
        item = self._items.popleft()
        if isinstance(item, Chunk):
            self._slots.release()
        return item

    async def close(self) -> None:
        """Stop reading and close the consumer; returns once the consumer is closed."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            await self._ended.wait()

    def _arrive(self, item: Chunk | FeedFailed) -> None:
        self._items.append(item)
        self._arrived.set()

    # -- the feed's thread -----------------------------------------------------------------------

    def _hand(self, item: Chunk | FeedFailed) -> bool:
        """Give the event loop ``item``, waiting for room (a chunk) unless stopped."""
        if isinstance(item, Chunk):
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return False
        try:
            self._loop.call_soon_threadsafe(self._arrive, item)
        except RuntimeError:  # the event loop is closed: the server is gone
            self._stop.set()
            return False
        return True

    def _run(self) -> None:
        try:
            self._read()
        finally:
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits
                self._loop.call_soon_threadsafe(self._ended.set)

    def _read(self) -> None:
        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            self._hand(FeedFailed(f"cannot create a Kafka consumer: {exc}"))
            return
        try:
            self._stream(consumer)
        except Exception as exc:
            log.exception("the stream of %s stopped", self.subscriber)
            self._hand(FeedFailed(f"reading the subscriber's topics failed: {exc}"))
        finally:
            consumer.close()

    def _stream(self, consumer: Consumer) -> None:
        positions: Positions = {d: list(o) for d, o in (self._start.positions or {}).items()}
        assigned: dict[str, int] = {}
        self._assign(consumer, self._topics(consumer), positions, assigned, first=True)
        if not self._hand(
            Chunk(position_frame(self._ids.issue(self.subscriber, positions)).encode(), [])
        ):
            return
        next_look = time.monotonic() + self._options.discovery_interval
        while not self._stop.is_set():
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + self._options.discovery_interval
                try:
                    found = self._topics(consumer)
                except KafkaException as exc:
                    log.warning("looking for new topics of %s: %s", self.subscriber, exc)
                else:
                    self._assign(consumer, found, positions, assigned, first=False)
            messages = consumer.consume(self._options.batch_size, timeout=0.5)
            frames: list[str] = []
            events: list[tuple[str, float]] = []
            for message in messages:
                if not carries_record(message, log, f"stream of {self.subscriber}"):
                    continue
                delivery = self._decode(message)
                if self._stop.is_set():
                    return
                _, dataset = parse_delivery_topic(message.topic() or "")
                positions[dataset][message.partition() or 0] = (message.offset() or 0) + 1
                if delivery is None:
                    continue
                frames.append(event_frame(self._ids.issue(self.subscriber, positions), delivery))
                events.append((dataset, delivery.event_time.timestamp()))
            if frames and not self._hand(Chunk("".join(frames).encode(), events)):
                return

    def _topics(self, consumer: Consumer) -> dict[str, int]:
        """The subscriber's datasets on the stream now, with their partition counts."""
        metadata = consumer.list_topics(timeout=10)
        found: dict[str, int] = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None or not self._pattern.match(name):
                continue
            _, dataset = parse_delivery_topic(name)
            if self._datasets is None or dataset in self._datasets:
                found[dataset] = len(topic.partitions)
        return found

    def _assign(
        self,
        consumer: Consumer,
        topics: dict[str, int],
        positions: Positions,
        assigned: dict[str, int],
        *,
        first: bool,
    ) -> None:
        """Add the partitions not read yet, each at its position; a new client's first
        partitions start at the live end (or the beginning), any later one at its beginning:
        everything on it is news to the client."""
        new: list[TopicPartition] = []
        for dataset, count in sorted(topics.items()):
            have = assigned.get(dataset, 0)
            if count <= have:
                continue
            topic = delivery_topic(self.subscriber, dataset)
            offsets = positions.setdefault(dataset, [])
            for partition in range(have, count):
                if partition >= len(offsets):
                    offsets.append(self._first_offset(consumer, topic, partition, first))
                new.append(TopicPartition(topic, partition, offsets[partition]))
            assigned[dataset] = count
        if new:
            consumer.incremental_assign(new)

    def _first_offset(self, consumer: Consumer, topic: str, partition: int, first: bool) -> int:
        if not first or self._start.positions is not None or self._start.earliest:
            return 0  # below the log start, the consumer resets to the earliest kept
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return max(0, int(high))

    def _decode(self, message: Message) -> Delivery | None:
        """The delivery, or None for bytes that are not a subscriber view (skipped: the
        connectors' dead-letter path is separate). An unanswering registry is waited for."""
        while not self._stop.is_set():
            try:
                return decode(message, self._schemas)
            except Undecodable as exc:
                log.warning(
                    "skipping %s[%s]@%s for %s: %s (%s)",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    self.subscriber,
                    exc.reason,
                    exc,
                )
                return None
            except RegistryUnavailable as exc:
                log.warning("waiting for the schema registry: %s", exc)
                self._stop.wait(REGISTRY_RETRY_SECONDS)
        return None
