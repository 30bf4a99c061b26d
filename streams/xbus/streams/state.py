"""The policy state every engine worker keeps: the grants in force and the reference
tables, read from their compacted topics and followed while the bus runs, so that a grant
applied, changed or revoked takes effect without a restart. Also the grants topic read once
to its end, and a reference table written. What their records hold:
``xbus.streams.policy_records``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.errors import SerializationError
from xbus.core.metrics import GRANT_EXPIRY, GRANT_VERSION, GRANTS_IN_FORCE
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.settings import BusSettings
from xbus.core.topics import GRANTS_TOPIC, REFERENCE_PREFIX
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import StoredGrant, decode_entry, decode_grant, entry_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySnapshot:
    """What is in force at one moment: compiled grants by source topic, and the tables."""

    grants: Mapping[str, tuple[CompiledGrant, ...]]
    tables: Mapping[str, Mapping[str, str]]

    def get(self, table: str, key: str) -> str | None:
        """The value of ``key`` in reference table ``table``, if any."""
        return self.tables.get(table, {}).get(key)

    @property
    def all_grants(self) -> list[CompiledGrant]:
        return [g for grants in self.grants.values() for g in grants]


class PolicyState:
    """Follows the grants and reference-table topics in a background thread."""

    def __init__(self, settings: BusSettings, catalog: Catalog) -> None:
        self._catalog = catalog
        self._consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": f"xbus-policy-{uuid.uuid4().hex}",  # never commits: reads it all
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "topic.metadata.refresh.interval.ms": 5000,
                }
            )
        )
        self._consumer.subscribe([GRANTS_TOPIC, "^" + re.escape(REFERENCE_PREFIX) + ".*"])
        self._stored: dict[str, StoredGrant] = {}
        self._tables: dict[str, dict[str, str]] = {}
        self._snapshot = PolicySnapshot({}, {})
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-state", daemon=True)

    def start(self) -> None:
        """Start following; ``caught_up`` is set once the topics were read to their end."""
        self._thread.start()

    def snapshot(self) -> PolicySnapshot:
        """What is in force now (an immutable value, replaced on every change)."""
        return self._snapshot

    def _run(self) -> None:
        idle_polls = 0
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(500, timeout=0.2)
                changed = False
                for message in messages:
                    changed |= self._apply(message)
                if changed:
                    self._rebuild()
                idle_polls = 0 if messages else idle_polls + 1
                if not self.caught_up.is_set() and idle_polls >= 2 and self._at_end():
                    self._rebuild()
                    self.caught_up.set()
        finally:
            self._consumer.close()

    def _at_end(self) -> bool:
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        for tp in self._consumer.position(assignment):
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), cached=False, timeout=5
            )
            if tp.offset >= 0 and tp.offset < high or tp.offset < 0 and high > 0:
                return False
        return True

    def _apply(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            if error.code() not in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                log.warning("policy state: %s", error)
            return False
        topic, key, value = message.topic() or "", (message.key() or b"").decode(), message.value()
        try:
            if topic == GRANTS_TOPIC:
                if value is None:
                    self._stored.pop(key, None)
                else:
                    self._stored[key] = decode_grant(value)
                return True
            table = self._tables.setdefault(topic.removeprefix(REFERENCE_PREFIX), {})
            if value is None:
                table.pop(key, None)
            else:
                table[key] = decode_entry(value)
            return True
        except SerializationError as exc:
            log.error(
                "%s[%s]@%s, key %s, cannot be read and is ignored: %s",
                topic,
                message.partition(),
                message.offset(),
                key,
                exc,
            )
            return False

    def _rebuild(self) -> None:
        by_topic: dict[str, list[CompiledGrant]] = {}
        for grant_id, (grant, version) in sorted(self._stored.items()):
            compiled = check_and_compile(grant, self._catalog, version)
            if not isinstance(compiled, CompiledGrant):
                log.error(
                    "grant %s v%s is not valid against this catalog and is not applied: %s",
                    grant_id,
                    version,
                    "; ".join(m for _, m in compiled),
                )
                continue
            by_topic.setdefault(compiled.dataset.topic, []).append(compiled)
        tables = {name: dict(rows) for name, rows in self._tables.items()}
        self._snapshot = PolicySnapshot({t: tuple(g) for t, g in by_topic.items()}, tables)
        _publish_metrics(self._snapshot)

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


def _seconds_until(moment: dt.datetime) -> Callable[[], float]:
    return lambda: (moment - dt.datetime.now(dt.UTC)).total_seconds()


def _publish_metrics(snapshot: PolicySnapshot) -> None:
    """Grants in force, each grant's version and the seconds until it expires."""
    GRANT_VERSION.clear()
    GRANT_EXPIRY.clear()
    grants = snapshot.all_grants
    GRANTS_IN_FORCE.set_function(
        lambda: sum(g.grant.in_force(dt.datetime.now(dt.UTC)) for g in grants)
    )
    for compiled in grants:
        g = compiled.grant
        labels = (g.grant, g.subscriber, g.dataset)
        GRANT_VERSION.labels(*labels).set(compiled.version)
        until = g.valid_until
        if until is not None:
            GRANT_EXPIRY.labels(*labels).set_function(_seconds_until(until))


def current_grants(settings: BusSettings, timeout: float = 30.0) -> dict[str, StoredGrant]:
    """The grants stored on the grants topic now, by id (read to its end). Raises
    ``SerializationError`` naming the record if one cannot be read."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": f"xbus-grants-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
    )
    found: dict[str, StoredGrant] = {}
    try:
        metadata = consumer.list_topics(GRANTS_TOPIC, timeout=timeout).topics.get(GRANTS_TOPIC)
        if metadata is None or metadata.error is not None:
            return found
        partitions = [TopicPartition(GRANTS_TOPIC, p, 0) for p in metadata.partitions]
        ends = {
            p.partition: consumer.get_watermark_offsets(p, timeout=timeout)[1] for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign(partitions)
        while pending:
            message = consumer.poll(timeout)
            if message is None:
                break
            error, partition = message.error(), message.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                continue
            key, value = (message.key() or b"").decode(), message.value()
            if value is None:
                found.pop(key, None)
            else:
                try:
                    found[key] = decode_grant(value)
                except SerializationError as exc:
                    raise SerializationError(
                        exc.reason,
                        f"{GRANTS_TOPIC}[{partition}]@{message.offset()}, grant {key}: {exc}; "
                        f"apply the grant again to store a readable version",
                    ) from exc
            if (message.offset() or 0) + 1 >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()
    return found


def set_reference_table(settings: BusSettings, table: str, entries: Mapping[str, Any]) -> None:
    """Put ``entries`` (code: value) of a reference table in force; raises ``Unacknowledged``
    if Kafka did not take them all."""
    topic = f"{REFERENCE_PREFIX}{table}"
    ensure_topics(settings, {topic: 1}, config={topic: {"cleanup.policy": "compact"}})
    produce_and_confirm(
        Producer(settings.producer_config()),
        (Record(topic, entry_value(value), str(code).encode()) for code, value in entries.items()),
        timeout=30,
        what=f"the entries of reference table {table}",
    )
