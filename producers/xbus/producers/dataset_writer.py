"""What a publisher does per dataset before Kafka: check an event and turn it into the key and
bytes it is produced with.

Two paths give the same result. The reference path checks the records with the dataset's
``RecordValidator`` (every problem, by path), builds the envelope (``change_event``), makes
the engine's checks on it (``check_event``) and encodes it with fastavro. The compiled path
(``xbus.core.envelope_writer``) checks and writes in one pass, with no dict built, and takes
only the events it is sure of: an invalid event, or one in a form it does not take, goes the
reference path, which then names every problem as it always did. A dataset whose schema or
names the compiled path cannot write takes the reference path for every event.
"""

from __future__ import annotations

from typing import Any

from xbus.core.catalog import Dataset
from xbus.core.envelope import (
    ChangeEvent,
    Op,
    change_event,
    check_event,
    image_problem,
    record_full_name,
    with_union_branches,
)
from xbus.core.envelope_writer import EnvelopeWriter
from xbus.core.metrics import EVENTS_PUBLISHED, PUBLISH_LATENCY
from xbus.core.record_writer import NotCompiled
from xbus.core.serde import WireEncoder
from xbus.core.validation import FieldError, RecordValidator

Written = tuple[str, bytes, bytes]
"""An event ready to produce: its id, its Kafka key and its value."""


class DatasetWriter:
    """Checks and encodes the events one department's system publishes of one dataset, with
    the schema registered under ``schema_id``; holds the dataset's metrics, bound once."""

    def __init__(
        self, department: str, dataset: Dataset, schema_id: int, *, system: str, origin: str
    ) -> None:
        self.department = department
        self.dataset = dataset
        self.system = system
        self.origin = origin
        self.topic = dataset.topic
        self.validator = RecordValidator(dataset.schema)
        self.encoder = WireEncoder(schema_id, dataset.envelope)
        self.record_name = record_full_name(dataset.schema)
        self.published = EVENTS_PUBLISHED.labels(department, dataset.name)
        self.latency = PUBLISH_LATENCY.labels(department, dataset.name)
        # The key is the record's own strings: only then is it the same as the reference
        # path's, which reads it from the converted record.
        self._keys = dataset.business_key
        self._envelope = self._compile(schema_id)

    def prepare(
        self,
        op: Op,
        after: Any,
        before: Any,
        ts_ms: Any,
        event_id: Any,
        trace_id: Any,
    ) -> Written | list[FieldError]:
        """The event ready to produce, or every problem found: by the compiled path when it
        is sure, else by the reference path."""
        written = self.write(op, after, before, ts_ms, event_id, trace_id)
        if written is not None:
            return written
        event, errors = self.check(
            op, after, before, ts_ms=ts_ms, event_id=event_id, trace_id=trace_id
        )
        return errors if errors else self.encode(event)

    # -- the reference path ----------------------------------------------------------------

    def check(
        self,
        op: Op,
        after: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        *,
        ts_ms: int | None = None,
        event_id: str | None = None,
        trace_id: str | None = None,
        path: str = "",
    ) -> tuple[ChangeEvent, list[FieldError]]:
        """The event, with its records converted to Avro's values, and every problem found
        (paths start with ``path``); an event with problems must not be produced."""
        problem = image_problem(op, before, after)
        errors = [] if problem is None else [FieldError(problem.field, problem.detail)]
        checked_before = checked_after = None
        if before is not None:
            checked_before, found = self.validator.conform(before, f"{path}before")
            errors += found
        if after is not None:
            checked_after, found = self.validator.conform(after, f"{path}after")
            errors += found
        event = change_event(
            department=self.department,
            dataset=self.dataset.name,
            op=op,
            after=checked_after,
            before=checked_before,
            system=self.system,
            origin=self.origin,
            trace_id=trace_id,
            ts_ms=ts_ms,
            event_id=event_id,
        )
        if not errors:
            # The checks the engine makes on what it reads, made here on what is built, so
            # that nothing the engine would dead-letter is ever sent.
            record = checked_after if checked_after is not None else checked_before
            assert record is not None  # image_problem refused an event without its image
            problem = check_event(event, self.topic, self.dataset.key_of(record), self.dataset)
            if problem is not None:
                errors.append(FieldError(path + problem.field, problem.detail))
        return event, errors

    def encode(self, event: ChangeEvent) -> Written:
        """The key and bytes of an event ``check`` found valid."""
        record = event["after"] if event["after"] is not None else event["before"]
        assert record is not None  # check refused an event without the record its op needs
        key = self.dataset.key_of(record).encode()
        value = self.encoder.encode(with_union_branches(event, self.record_name))
        return event["event_id"], key, value

    # -- the compiled path -----------------------------------------------------------------

    def write(
        self,
        op: Op,
        after: Any,
        before: Any,
        ts_ms: Any,
        event_id: Any,
        trace_id: Any,
    ) -> Written | None:
        """The event written by the compiled path, or None if the reference path must decide
        (the event may be invalid, or in a form the compiled path leaves to it)."""
        envelope = self._envelope
        if envelope is None:
            return None
        try:
            event_id, value = envelope.write(op, after, before, ts_ms, event_id, trace_id)
            # The record writer took every key field as a str: each is a plain string.
            record = after if after is not None else before
            keys = self._keys
            key = record[keys[0]] if len(keys) == 1 else "|".join([record[k] for k in keys])
            return event_id, key.encode(), value
        except Exception:  # Undecided, or anything the reference path is to meet itself
            return None

    def _compile(self, schema_id: int) -> EnvelopeWriter | None:
        dataset = self.dataset
        probe = change_event(
            department=self.department, dataset=dataset.name, op=Op.CREATE, after={}, system=""
        )
        if check_event(probe, self.topic, None, None) is not None:
            return None  # every event would fail the engine's checks: the reference says how
        if not all(_is_plain_string(dataset.field(k)["type"]) for k in self._keys):
            return None
        try:
            return EnvelopeWriter(
                schema_id,
                dataset.envelope,
                dataset.schema,
                department=self.department,
                dataset=dataset.name,
                system=self.system,
                origin=self.origin,
            )
        except NotCompiled:
            return None


def _is_plain_string(kind: Any) -> bool:
    return bool(kind == "string" or kind == {"type": "string"})
