"""What would a subscriber see: a grant, in force or a draft under review, run by the engine's
own decision (``xbus.streams.explanation.explain``) over a dataset's recent events, with the
source record and the subscriber's view side by side, field by field.

Only the office and the owning department see this page: it shows source values. A
subscriber never reaches it (``tests/console/test_preview.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from xbus.core.catalog import Dataset
from xbus.core.envelope import ChangeEvent
from xbus.core.errors import SerializationError
from xbus.core.serde import WriterSchemas, registry_client
from xbus.core.settings import BusSettings
from xbus.core.values import to_json
from xbus.streams.explanation import explain
from xbus.streams.policy import CompiledGrant, ReferenceTables
from xbus.streams.routing import read_event


@dataclass(frozen=True)
class FieldShown:
    """One field of one event: its source value, what the subscriber gets, and the rule."""

    path: str
    source: str
    view: str | None  # None: withheld
    rule: str

    @property
    def masked(self) -> bool:
        return self.rule.startswith("masked") or self.rule.startswith("derived")


@dataclass(frozen=True)
class EventShown:
    """One recent event of the dataset under the grant."""

    event_id: str
    op: str
    at: dt.datetime
    outcome: str
    reason: str
    fields: tuple[FieldShown, ...]
    added: tuple[FieldShown, ...]  # what the view has that the source has not (derived...)


def recent_events(settings: BusSettings, dataset: Dataset, count: int = 10) -> list[ChangeEvent]:
    """The last ``count`` change events on ``dataset``'s source topic (newest first), read
    without a consumer group's commit."""
    consumer = Consumer(settings.consumer_config(f"xbus-console-preview-{uuid.uuid4().hex[:8]}"))
    decoder = WriterSchemas(registry_client(settings))
    try:
        metadata = consumer.list_topics(dataset.topic, timeout=10)
        topic = metadata.topics.get(dataset.topic)
        if topic is None or topic.error is not None:
            return []
        ends: dict[int, int] = {}
        starts = []
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(dataset.topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(dataset.topic, partition, max(low, high - count)))
        if not starts:
            return []
        consumer.assign(starts)
        events: list[ChangeEvent] = []
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
        while ends and dt.datetime.now(dt.UTC) < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            # Not a change event: the engine dead-letters it; nothing to show.
            with contextlib.suppress(SerializationError, KeyError, TypeError):
                events.append(read_event(decoder, message.value()))
            if (
                partition is not None
                and offset is not None
                and offset + 1 >= ends.get(partition, 0)
            ):
                ends.pop(partition, None)
        events.sort(key=lambda e: e["ts_ms"], reverse=True)
        return events[:count]
    finally:
        consumer.close()


def _flat(record: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(record, dict):
        return {}
    flat: dict[str, Any] = {}
    for name, value in record.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = to_json(value)
    # A date, a decimal or a time as its text, not as a quoted JSON string.
    return str(json.loads(text)) if text.startswith('"') else text


def show(
    grant: CompiledGrant,
    events: list[ChangeEvent],
    now: dt.datetime,
    tables: ReferenceTables | None = None,
) -> list[EventShown]:
    """Each event as the grant's subscriber would receive it at ``now``."""
    shown = []
    for event in events:
        explanation = explain(grant, event, now, tables)
        decision = explanation.decision
        record = event["after"] or event["before"]
        source = _flat(record)
        view_event = decision.view
        view = _flat((view_event["after"] or view_event["before"]) if view_event else None)
        renamed = {
            path: rule.rename
            for path, rule in grant.grant.fields.items()
            if rule.rename is not None
        }
        fields = []
        for path, value in source.items():
            rule = explanation.fields.get(path) or explanation.fields.get(
                path.rsplit(".", 1)[0], ""
            )
            out_name = renamed.get(path, path)
            fields.append(
                FieldShown(
                    path,
                    _text(value),
                    _text(view[out_name]) if out_name in view else None,
                    rule,
                )
            )
        known = {renamed.get(p, p) for p in source}
        added = tuple(
            FieldShown(path, "", _text(value), explanation.fields.get(path, ""))
            for path, value in view.items()
            if path not in known
        )
        shown.append(
            EventShown(
                str(event["event_id"]),
                str(event["op"]),
                event["ts_ms"] if isinstance(event["ts_ms"], dt.datetime) else now,
                decision.outcome,
                decision.reason,
                tuple(fields),
                added,
            )
        )
    return shown
