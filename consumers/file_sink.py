"""The file connector: appends what a subscriber receives as JSON lines, one file per dataset.

A batch is written, flushed and fsynced before its offsets are committed, so a crash can
repeat an event in the file (at least once; ``event_id`` tells repeats apart) but never
lose one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from xbus.metrics import END_TO_END_LATENCY, EVENTS_DELIVERED
from xbus.serde import EventDeserializer, registry_client, value_context
from xbus.settings import BusSettings
from xbus.topics import DELIVERY_PREFIX, parse_delivery_topic
from xbus.values import to_json

log = logging.getLogger(__name__)


class FileSink:
    """Consumes ``deliver.<subscriber>.*`` of each subscriber and appends each event to
    ``<directory>/<subscriber>/<dataset>.jsonl``."""

    def __init__(self, settings: BusSettings, subscribers: list[str], directory: Path) -> None:
        self.subscribers = sorted(subscribers)
        self.directory = directory
        self._decode = EventDeserializer(registry_client(settings))
        self._consumer = Consumer(
            settings.consumer_config(
                "xbus-file-" + "+".join(self.subscribers),
                **{"topic.metadata.refresh.interval.ms": 5000},
            )
        )
        self._consumer.subscribe(
            ["^" + re.escape(f"{DELIVERY_PREFIX}{s}.") + ".*" for s in self.subscribers]
        )
        self._files: dict[tuple[str, str], IO[str]] = {}

    def run(self, stop: threading.Event, *, batch_size: int = 500, on_event: Any = None) -> None:
        """Deliver until ``stop`` is set; ``on_event(subscriber, dataset, event)`` sees each
        written event."""
        try:
            while not stop.is_set():
                messages = self._consumer.consume(batch_size, timeout=0.5)
                if messages:
                    self._write(messages, on_event)
        finally:
            self.close()

    def _write(self, messages: list[Message], on_event: Any) -> None:
        written: list[tuple[str, str, dict[str, Any]]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                # Informational: no topic matches the pattern yet, a broker is briefly away.
                # librdkafka recovers by itself.
                if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.warning("consumer: %s", error)
                continue
            topic, value = message.topic() or "", message.value()
            subscriber, dataset = parse_delivery_topic(topic)
            if value is None:
                # The engine never writes tombstones; one from elsewhere carries nothing to keep.
                log.warning(
                    "skipping an empty message at %s[%s]@%s",
                    topic,
                    message.partition(),
                    message.offset(),
                )
                continue
            event = self._decode(value, value_context(topic))
            self._file(subscriber, dataset).write(to_json(event) + "\n")
            written.append((subscriber, dataset, event))
        if not written:
            return
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
        self._consumer.commit(asynchronous=False)
        now = time.time()
        for subscriber, dataset, event in written:
            EVENTS_DELIVERED.labels(subscriber, dataset, "file").inc()
            END_TO_END_LATENCY.labels(subscriber, "file").observe(
                max(0.0, now - event["ts_ms"].timestamp())
            )
            if on_event is not None:
                on_event(subscriber, dataset, event)

    def _file(self, subscriber: str, dataset: str) -> IO[str]:
        f = self._files.get((subscriber, dataset))
        if f is None:
            folder = self.directory / subscriber
            folder.mkdir(parents=True, exist_ok=True)
            f = open(folder / f"{dataset}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            self._files[(subscriber, dataset)] = f
        return f

    def close(self) -> None:
        """Close the files and leave the consumer group."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._consumer.close()
