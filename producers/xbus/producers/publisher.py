"""The producer SDK: a ``Publisher`` bound to one department.

Each record is checked against its dataset (every bad field reported by path), wrapped in
the change-event envelope, encoded in the Confluent wire format with the dataset's
registered schema, and produced keyed by its business key with an idempotent producer and
``acks=all``. An event is published when Kafka acknowledged it: ``publish`` returns a future
that says so, ``publish_sync`` and ``publish_async`` wait for it, ``publish_batch`` checks a
whole batch before producing any of it, and ``close`` waits for everything still in flight.
Failures are typed (see ``xbus.producers.exceptions``); nothing is dropped silently.

    with Publisher("market_regulation", system="licensing") as bureau:
        receipt = bureau.publish_sync("business_licence", Op.CREATE, after=licence)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from xbus.core.catalog import Catalog
from xbus.core.envelope import ChangeEvent, Op
from xbus.core.errors import CatalogError
from xbus.core.metrics import EVENTS_REJECTED
from xbus.core.producing import produce
from xbus.core.serde import registered_schema_id, registry_client
from xbus.core.settings import BusSettings, bus_settings
from xbus.core.topics import value_subject
from xbus.core.validation import FieldError
from xbus.producers.acknowledgement import Acknowledgement
from xbus.producers.dataset_writer import DatasetWriter, Written
from xbus.producers.exceptions import (
    BrokerUnreachable,
    DeliveryFailed,
    ForeignDataset,
    InvalidBatch,
    InvalidRecord,
    PublishError,
    RecordTooLarge,
    RegistryUnavailable,
    SchemaNotRegistered,
    UnknownDataset,
)

POLL_INTERVAL = 0.005
MAX_MESSAGE_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``: the largest record a producer sends (Kafka's
brokers take 1 MiB by default, a little more)."""
# Kafka could not take the event now; the same event may be published again later. With
# acks=all, fewer replicas in sync than min.insync.replicas (nodes of a cluster down) is one.
_UNREACHABLE = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}


@dataclass(frozen=True)
class Receipt:
    """Kafka's acknowledgement of one event: where it now durably is."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class EventSpec:
    """One change to publish, as a batch takes it."""

    op: Op
    after: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    ts_ms: int | None = None
    event_id: str | None = None
    trace_id: str | None = None


class _ServingReports(threading.local):
    """Whether this thread is inside a poll or flush of the publisher's producer."""

    active = False


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
        delivery_timeout: float = 30.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self.department = department
        self.system = system
        self.origin = origin
        self.delivery_timeout = delivery_timeout
        self._settings = settings or bus_settings()
        self._catalog = catalog or Catalog.load(self._settings.schemas_dir)
        self._registry = registry_client(self._settings)
        self._writers: dict[str, DatasetWriter] = {}
        config = self._settings.producer_config(
            **{"message.timeout.ms": int(delivery_timeout * 1000)}, **(producer_config or {})
        )
        self._max_bytes = int(config.get("message.max.bytes", MAX_MESSAGE_BYTES))
        self._producer = Producer(config)
        self._serving = _ServingReports()
        self._publishing = False  # whether an event was produced since the poller last looked
        self._closed = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name=f"publisher-{department}", daemon=True
        )
        self._poller.start()

    def _poll(self) -> None:
        # Each publish serves the reports that came back since the last (``_produce``); this
        # thread serves them only once nothing was published for a while, e.g. while
        # ``publish_sync`` waits. It must keep out of the publishing threads' way:
        # confluent-kafka takes the GIL back for every single report, and against a thread
        # that keeps the GIL busy, a thread serving reports got it about once per switch
        # interval (5 ms), holding back the reports it had taken, by the thousand, and their
        # futures with them.
        while not self._closed.wait(POLL_INTERVAL):
            if self._publishing:
                self._publishing = False
            else:
                self._serve_reports()

    # -- the dataset -----------------------------------------------------------------------

    def _writer(self, name: str) -> DatasetWriter:
        writer = self._writers.get(name)
        if writer is not None:
            return writer
        if name.startswith(f"{self.department}."):  # its own dataset, named in full
            return self._writer(name.removeprefix(f"{self.department}."))
        try:
            dataset = self._catalog.get(self.department, name)
        except CatalogError:
            # A dataset named alone, or qualified as department.dataset.
            department, _, bare = name.rpartition(".")
            owners = [
                d.department
                for d in self._catalog
                if d.name == bare
                and department in ("", d.department)
                and d.department != self.department
            ]
            self._reject(name, UnknownDataset.reason if not owners else ForeignDataset.reason)
            if owners:
                raise ForeignDataset(
                    f"dataset {name!r} belongs to {' and '.join(owners)}, not to "
                    f"{self.department}; a department publishes only its own datasets"
                ) from None
            raise UnknownDataset(
                f"{self.department} has no dataset {name!r}; its datasets: "
                + (
                    ", ".join(d.name for d in self._catalog if d.department == self.department)
                    or "none"
                )
            ) from None
        subject = value_subject(dataset.topic)
        try:
            schema_id = registered_schema_id(self._registry, subject, dataset.envelope)
        except Exception as exc:  # refused, timed out, 5xx: whatever it is, no schema id
            self._reject(name, RegistryUnavailable.reason)
            raise RegistryUnavailable(
                f"the schema registry at {self._settings.schema_registry_url} did not answer "
                f"the lookup of {subject}: {exc}"
            ) from exc
        if schema_id is None:
            self._reject(name, SchemaNotRegistered.reason)
            raise SchemaNotRegistered(
                f"the current schema of {dataset.qualified_name} ({dataset.path}) is not "
                f"registered under {subject}; run `xbus schemas register` first"
            )
        writer = DatasetWriter(
            self.department, dataset, schema_id, system=self.system, origin=self.origin
        )
        self._writers[name] = writer
        return writer

    def _reject(self, dataset: str, reason: str, count: int = 1) -> None:
        EVENTS_REJECTED.labels(self.department, dataset, reason).inc(count)

    def _event(
        self, writer: DatasetWriter, spec: EventSpec, path: str = ""
    ) -> tuple[ChangeEvent, list[FieldError]]:
        return writer.check(
            spec.op,
            spec.after,
            spec.before,
            ts_ms=spec.ts_ms,
            event_id=spec.event_id,
            trace_id=spec.trace_id,
            path=path,
        )

    # -- producing -------------------------------------------------------------------------

    def _produce(self, writer: DatasetWriter, written: Written) -> Future[Receipt]:
        event_id, key, value = written
        if len(value) + len(key) > self._max_bytes:
            self._reject(writer.dataset.name, RecordTooLarge.reason)
            raise RecordTooLarge(
                writer.dataset.qualified_name, len(value) + len(key), self._max_bytes
            )
        future: Acknowledgement[Receipt] = Acknowledgement()
        started = time.perf_counter()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                writer.published.inc()
                writer.latency.observe(time.perf_counter() - started)
                future.set_result(
                    Receipt(event_id, msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                )
            else:
                future.set_exception(self._failure(writer, event_id, err))

        produce(self._producer, writer.topic, value, key, on_delivery=on_delivery)
        self._publishing = True
        self._serve_reports()
        return future

    def _failure(self, writer: DatasetWriter, event_id: str, err: KafkaError) -> PublishError:
        if err.code() in _UNREACHABLE:
            self._reject(writer.dataset.name, BrokerUnreachable.reason)
            return BrokerUnreachable(
                f"Kafka at {self._settings.bootstrap_servers} did not acknowledge event "
                f"{event_id} within {self.delivery_timeout:.0f}s: {err.str()}"
            )
        self._reject(writer.dataset.name, DeliveryFailed.reason)
        return DeliveryFailed(
            f"Kafka refused event {event_id} of {writer.dataset.qualified_name}: {err.str()}"
        )

    def _serve_reports(self) -> None:
        """Serve the delivery reports Kafka has sent back (their callbacks settle the futures),
        unless this thread is serving them already: a done callback that publishes again
        must not poll inside the poll (confluent-kafka's callbacks do not nest)."""
        serving = self._serving
        if serving.active:
            return
        serving.active = True
        try:
            self._producer.poll(0)
        finally:
            serving.active = False

    def publish(
        self,
        dataset: str,
        op: Op,
        *,
        after: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        ts_ms: int | None = None,
        event_id: str | None = None,
        trace_id: str | None = None,
    ) -> Future[Receipt]:
        """Check and queue one event; the future completes when Kafka acknowledged it.

        Raises ``InvalidRecord`` (with every bad field) before anything is produced.
        """
        self._check_open()
        writer = self._writer(dataset)
        prepared = writer.prepare(op, after, before, ts_ms, event_id, trace_id)
        if isinstance(prepared, list):
            self._reject(dataset, InvalidRecord.reason)
            raise InvalidRecord(writer.dataset.qualified_name, prepared)
        return self._produce(writer, prepared)

    def publish_sync(self, dataset: str, op: Op, **fields: Any) -> Receipt:
        """Publish one event and wait for Kafka's acknowledgement."""
        return self.wait_for(dataset, [self.publish(dataset, op, **fields)])[0]

    async def publish_async(self, dataset: str, op: Op, **fields: Any) -> Receipt:
        """Publish one event; resumes when Kafka acknowledged it."""
        return await asyncio.wrap_future(self.publish(dataset, op, **fields))

    def check_batch(
        self, dataset: str, specs: Iterable[EventSpec]
    ) -> tuple[list[ChangeEvent], dict[int, list[FieldError]]]:
        """The events of a batch and the errors of each bad record, by index; produces nothing."""
        writer = self._writer(dataset)
        events: list[ChangeEvent] = []
        errors: dict[int, list[FieldError]] = {}
        for index, spec in enumerate(specs):
            event, found = self._event(writer, spec)
            events.append(event)
            if found:
                errors[index] = found
        return events, errors

    def produce_checked(self, dataset: str, events: Iterable[ChangeEvent]) -> list[Future[Receipt]]:
        """Queue events that ``check_batch`` found valid."""
        writer = self._writer(dataset)
        return [self._produce(writer, writer.encode(event)) for event in events]

    def publish_batch(self, dataset: str, specs: Iterable[EventSpec]) -> list[Receipt]:
        """Publish a batch all or nothing as far as checking goes: if any record is invalid,
        ``InvalidBatch`` names each and nothing is produced; else wait for every
        acknowledgement and return the receipts in order."""
        self._check_open()
        events, errors = self.check_batch(dataset, specs)
        if errors:
            self._reject(dataset, InvalidRecord.reason, len(errors))
            raise InvalidBatch(f"{self.department}.{dataset}", errors)
        futures = self.produce_checked(dataset, events)
        return self.wait_for(dataset, futures)

    @property
    def acknowledgement_timeout(self) -> float:
        """How long a publish waits for Kafka's acknowledgement before giving up: the delivery
        timeout, and a margin for the report to come back."""
        return self.delivery_timeout + 5

    def wait_for(self, dataset: str, futures: list[Future[Receipt]]) -> list[Receipt]:
        """The receipts of ``futures``, waiting up to ``acknowledgement_timeout`` in all; what
        Kafka refused raises its ``PublishError``, what it did not answer in time
        ``unacknowledged``'s ``BrokerUnreachable``."""
        deadline = time.monotonic() + self.acknowledgement_timeout
        receipts = []
        for index, future in enumerate(futures):
            try:
                receipts.append(future.result(max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                raise self.unacknowledged(dataset, len(futures) - index) from None
        return receipts

    def unacknowledged(self, dataset: str, count: int) -> BrokerUnreachable:
        """The error for ``count`` events Kafka did not answer for in time (a partition whose
        replicas are not enough in sync, a leader being moved): they may still be written,
        so publishing them again must keep their event ids."""
        self._reject(dataset, BrokerUnreachable.reason, count)
        return BrokerUnreachable(
            f"Kafka at {self._settings.bootstrap_servers} did not acknowledge {count} event(s) "
            f"of {self.department}.{dataset} within {self.acknowledgement_timeout:.0f}s; they "
            "may still be written: publish them again with the same event ids (subscribers "
            "apply each once)"
        )

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is acknowledged or has failed (its future says which).

        Raises ``BrokerUnreachable`` if events are still in flight after ``timeout``."""
        serving, was_serving = self._serving, self._serving.active
        serving.active = True
        try:
            remaining = self._producer.flush(
                self.delivery_timeout + 5 if timeout is None else timeout
            )
        finally:
            serving.active = was_serving
        if remaining:
            raise BrokerUnreachable(
                f"{remaining} event(s) still unacknowledged by Kafka at "
                f"{self._settings.bootstrap_servers}"
            )

    def close(self) -> None:
        """Wait for what is in flight, then stop."""
        if self._closed.is_set():
            return
        try:
            self.flush()
        finally:
            self._closed.set()
            self._poller.join()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise PublishError("this publisher is closed")

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
