"""The producer SDK: a ``Publisher`` bound to one department.

Events are produced with an idempotent producer and ``acks=all``, keyed by the record's
business key, in the Confluent wire format with the envelope schema registered under the
topic's subject. ``flush()`` (and leaving the ``with`` block) waits until Kafka acknowledged
every event, and raises if any was not: nothing is dropped silently.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from producers.exceptions import DeliveryFailed, ForeignDatasetError, PublishError
from xbus.catalog import Catalog, Dataset
from xbus.envelope import Op, change_event, envelope_schema
from xbus.metrics import EVENTS_PUBLISHED
from xbus.serde import EventSerializer, registry_client, value_context
from xbus.settings import BusSettings, bus_settings


class Publisher:
    """Publishes change events of the datasets one department owns."""

    def __init__(
        self,
        department: str,
        *,
        system: str,
        settings: BusSettings | None = None,
        catalog: Catalog | None = None,
        origin: str = "sdk",
    ) -> None:
        self.department = department
        self.system = system
        self.origin = origin
        self._settings = settings or bus_settings()
        self._catalog = catalog or Catalog.load(self._settings.schemas_dir)
        self._registry = registry_client(self._settings)
        self._serializers: dict[str, EventSerializer] = {}
        self._producer = Producer(self._settings.producer_config())
        self._failures: list[tuple[str, str]] = []

    def dataset(self, name: str) -> Dataset:
        """The dataset ``name`` of this department; refuses another department's dataset."""
        for d in self._catalog:
            if d.name == name and d.department != self.department:
                raise ForeignDatasetError(
                    f"dataset {name!r} belongs to {d.department}, not to {self.department}"
                )
        return self._catalog.get(self.department, name)

    def publish(
        self,
        dataset: str,
        op: Op,
        after: dict[str, Any] | None,
        before: dict[str, Any] | None = None,
        *,
        ts_ms: int | None = None,
    ) -> str:
        """Queue one change event and return its ``event_id``; ``flush()`` confirms it."""
        ds = self.dataset(dataset)
        record = after if after is not None else before
        if record is None:
            raise PublishError(f"{op} event of {dataset} needs a before or an after record")
        event = change_event(
            department=self.department,
            dataset=ds.name,
            op=op,
            after=after,
            before=before,
            system=self.system,
            origin=self.origin,
            ts_ms=ts_ms,
        )
        value = self._serializer(ds)(event, value_context(ds.topic))
        event_id: str = event["event_id"]

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._failures.append((event_id, str(err)))
            else:
                EVENTS_PUBLISHED.labels(self.department, ds.name).inc()

        while True:
            try:
                self._producer.produce(
                    ds.topic, key=ds.key_of(record).encode(), value=value, on_delivery=on_delivery
                )
                break
            except BufferError:
                # The local queue is full: let librdkafka send some before queueing more.
                self._producer.poll(0.1)
        self._producer.poll(0)
        return event_id

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until Kafka acknowledged every queued event; raise ``DeliveryFailed`` if not."""
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        if remaining:
            failures.append(
                ("(queued)", f"{remaining} event(s) still unacknowledged after {timeout}s")
            )
        if failures:
            raise DeliveryFailed(failures)

    def close(self) -> None:
        """Flush and release the producer."""
        self.flush()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _serializer(self, ds: Dataset) -> EventSerializer:
        serializer = self._serializers.get(ds.name)
        if serializer is None:
            serializer = EventSerializer(self._registry, envelope_schema(ds.schema))
            self._serializers[ds.name] = serializer
        return serializer
