"""The subscriber SDK: for an application that reads its ``deliver.<subscriber>.*`` topics
itself, and for one that receives webhooks.

    with Subscription(settings, "tax_bureau", group="tax-bureau-loader") as subscription:
        for delivery in subscription:
            store(delivery.dataset, delivery.key_text, delivery.event)
            subscription.commit(delivery)

Each event is decoded with the registry (the subscriber-view schema the engine registered);
offsets move only when the application commits, so what it did not finish comes again
(``delivery.event_id`` tells a repeat apart). Webhook receivers check each request with
``verify_webhook`` before trusting its body.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType

from confluent_kafka import Consumer, KafkaException, TopicPartition

from xbus.consumers.delivery import Delivery, decode
from xbus.consumers.sinks.signing import SIGNATURE_HEADER, WeakWebhookSecret, verify_webhook
from xbus.core.errors import RegistryUnavailable
from xbus.core.serde import WriterSchemas, registry_client
from xbus.core.settings import BusSettings
from xbus.core.topics import delivery_topic, delivery_topics_pattern

__all__ = ["SIGNATURE_HEADER", "Subscription", "WeakWebhookSecret", "verify_webhook"]


class Subscription:
    """Reads every dataset a subscriber is granted, in order per key, decoded."""

    def __init__(
        self,
        settings: BusSettings,
        subscriber: str,
        *,
        group: str,
        datasets: list[str] | None = None,
        from_beginning: bool = True,
    ) -> None:
        self.subscriber = subscriber
        self._schemas = WriterSchemas(registry_client(settings))
        self._consumer = Consumer(
            settings.consumer_config(
                group,
                **{
                    "auto.offset.reset": "earliest" if from_beginning else "latest",
                    "topic.metadata.refresh.interval.ms": 5000,
                },
            )
        )
        if datasets:
            topics = [delivery_topic(subscriber, d) for d in datasets]
        else:
            topics = [delivery_topics_pattern(subscriber)]
        self._consumer.subscribe(topics)

    def poll(self, timeout: float = 1.0) -> Delivery | None:
        """The next delivery, or None if none came within ``timeout`` seconds. A registry
        that does not answer is waited for; bytes that are not a subscriber view raise
        ``Undecodable`` (the application decides whether to skip them)."""
        message = self._consumer.poll(timeout)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            # Informational (no topic granted yet, a broker briefly away): librdkafka recovers.
            return None
        while True:
            try:
                return decode(message, self._schemas)
            except RegistryUnavailable:
                time.sleep(1.0)

    def __iter__(self) -> Iterator[Delivery]:
        """Deliveries as they come, until the caller breaks out."""
        while True:
            delivery = self.poll()
            if delivery is not None:
                yield delivery

    def commit(self, delivery: Delivery) -> None:
        """Mark ``delivery`` and everything before it on its partition as done."""
        self._consumer.commit(
            offsets=[TopicPartition(delivery.topic, delivery.partition, delivery.offset + 1)],
            asynchronous=False,
        )

    def close(self) -> None:
        """Leave the consumer group."""
        self._consumer.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
