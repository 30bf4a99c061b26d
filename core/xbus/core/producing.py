"""Producing under backpressure: the one way xbus hands a record to librdkafka."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Producer

Headers = Sequence[tuple[str, str | bytes | None]]


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    headers: Headers | None = None,
    on_delivery: Callable[[Any, Any], None] | None = None,
) -> None:
    """Queue one record; while librdkafka's local queue is full, serve delivery reports
    (which frees room) and try again, instead of failing or dropping the record."""
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value=value, key=key, headers=list(headers or []))
            else:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or []),
                    on_delivery=on_delivery,
                )
            return
        except BufferError:
            producer.poll(0.005)
