"""Producing: the one way xbus hands a record to librdkafka, and the one way it makes sure
Kafka took what it was given before anything depends on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from confluent_kafka import Producer

from xbus.core.errors import Unacknowledged
from xbus.core.headers import Headers


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


class Outgoing(Protocol):
    """A record to write: where, what, and with which key and headers."""

    @property
    def topic(self) -> str: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


class Record(NamedTuple):
    """An ``Outgoing`` record for callers that have no type of their own."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()


class Acknowledgements:
    """Collects the refusals among delivery reports: pass ``report`` as ``on_delivery`` to
    every ``produce`` whose outcome ``confirm`` is to judge. ``flush`` alone is not enough:
    it returns 0 once every report is in, refusals included."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.refused.append(f"{message.topic()}[{message.partition()}]: {error}")

    def confirm(self, producer: Producer, *, timeout: float, what: str) -> None:
        """Wait up to ``timeout`` seconds for every record in flight; raise ``Unacknowledged``
        (naming ``what``) if any is still unacknowledged or was refused."""
        remaining = producer.flush(timeout)
        refused, self.refused = self.refused, []
        if remaining or refused:
            shown = "; ".join(refused[:3])
            raise Unacknowledged(
                f"Kafka did not take {what}: {remaining} unacknowledged after {timeout:g}s, "
                f"{len(refused)} refused{f' ({shown})' if shown else ''}"
            )


def produce_and_confirm(
    producer: Producer, records: Iterable[Outgoing], *, timeout: float, what: str
) -> int:
    """Write ``records`` and return how many once Kafka acknowledged every one of them;
    else raise ``Unacknowledged``, and the caller must treat none of them as written."""
    acks = Acknowledgements()
    count = 0
    for r in records:
        produce(producer, r.topic, r.value, r.key, headers=r.headers, on_delivery=acks.report)
        count += 1
    acks.confirm(producer, timeout=timeout, what=what)
    return count
