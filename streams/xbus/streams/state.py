"""The policy state every engine worker keeps: the grants in force and the reference
tables, read from their compacted topics and followed while the bus runs, so that a grant
applied, changed or revoked takes effect without a restart. Also the grants topic read once
to its end, and a reference table written. What their records hold:
``xbus.streams.policy_records``.

No grant is enforced on the strength of having been written to the topic: each record must
carry the office's signature over its id, version and content (checked with the office's
public key, ``XBUS_GRANT_VERIFY_KEY_FILE``) and pass the very checks ``xbus grants validate``
makes against the engine's catalog. A record that fails either puts its grant id out of force
altogether (an earlier good version does not stay): failing closed, the subscriber gets
nothing under that id until the office applies the grant again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog, Dataset
from xbus.core.errors import ConfigurationError, SerializationError
from xbus.core.metrics import GRANT_EXPIRY, GRANT_VERSION, GRANTS_IN_FORCE, GRANTS_REFUSED
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.settings import BusSettings
from xbus.core.signatures import load_public_keys
from xbus.core.topics import GRANTS_TOPIC, POLICY_GROUP_PREFIX, REFERENCE_PREFIX
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import (
    REFUSAL_REASONS,
    Refusal,
    claimed_version,
    decode_entry,
    entry_value,
    read_grant_record,
)

log = logging.getLogger(__name__)


def office_public_keys(settings: BusSettings) -> list[Ed25519PublicKey]:
    """The office's public keys grants are checked with (``XBUS_GRANT_VERIFY_KEY_FILE``:
    one, or two while the office's key is rotated); ``ConfigurationError`` if none is
    configured or the file holds none: then no grant can be trusted."""
    if settings.grant_verify_key_file is None:
        raise ConfigurationError(
            "no grant-verifying key: set XBUS_GRANT_VERIFY_KEY_FILE to the office's public key "
            "(a PEM file; `xbus stack` makes one); no grant is enforced without it"
        )
    return load_public_keys(settings.grant_verify_key_file)


def judge_grant(
    key: bytes, value: bytes, office_keys: Sequence[Ed25519PublicKey], catalog: Catalog
) -> CompiledGrant | Refusal:
    """The grant a grants-topic record puts in force, compiled, if the office signed it and it
    passes ``xbus grants validate``'s checks against ``catalog``; else why not. The engine and
    ``xbus grants list`` judge every record with this."""
    read = read_grant_record(key, value, office_keys)
    if isinstance(read, Refusal):
        return read
    compiled = check_and_compile(read.grant, catalog, read.version)
    if isinstance(compiled, CompiledGrant):
        return compiled
    problems = "; ".join(message for _, message in compiled)
    return Refusal("invalid", f"not valid against the catalog: {problems}", read.version)


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


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
        """Raises ``ConfigurationError`` if the office's public key is not configured."""
        self._catalog = catalog
        self._office_keys = office_public_keys(settings)
        for reason in REFUSAL_REASONS:  # each shown from the start, at 0
            GRANTS_REFUSED.labels(reason)
        self._consumer = Consumer(
            settings.kafka_config(
                **{
                    # Never commits: reads it all, every time.
                    "group.id": f"{POLICY_GROUP_PREFIX}{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "topic.metadata.refresh.interval.ms": 5000,
                }
            )
        )
        self._consumer.subscribe([GRANTS_TOPIC, "^" + re.escape(REFERENCE_PREFIX) + ".*"])
        self._grants: dict[str, CompiledGrant] = {}
        self._refused: dict[str, Refusal] = {}
        # The records of refused grants, judged again when the catalog learns a dataset.
        self._refused_records: dict[str, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()
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
                try:
                    messages = self._consumer.consume(500, timeout=0.2)
                except KafkaException as exc:
                    # A broker moving a partition's leadership, a topic made a moment ago:
                    # the thread must outlive it, or no grant change (a revocation!) would
                    # ever be seen again.
                    log.warning("policy state: reading the grants failed, trying again: %s", exc)
                    self._stop.wait(0.5)
                    continue
                with self._lock:
                    changed = False
                    for message in messages:
                        changed |= self._apply(message)
                    if changed:
                        self._rebuild()
                idle_polls = 0 if messages else idle_polls + 1
                if not self.caught_up.is_set() and idle_polls >= 2 and self._at_end():
                    with self._lock:
                        self._rebuild()
                    self.caught_up.set()
        finally:
            self._consumer.close()

    def _at_end(self) -> bool:
        """Whether every assigned partition was read to its end; False while a broker cannot
        say (no leader yet, a leader moving): asked again on the next idle poll."""
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        try:
            for tp in self._consumer.position(assignment):
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), cached=False, timeout=5
                )
                if tp.offset >= 0 and tp.offset < high or tp.offset < 0 and high > 0:
                    return False
        except KafkaException as exc:
            log.info("policy state: where the grants end is not known yet: %s", exc)
            return False
        return True

    def _apply(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            if error.code() not in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                log.warning("policy state: %s", error)
            return False
        topic, raw_key, value = message.topic() or "", message.key() or b"", message.value()
        key = raw_key.decode(errors="replace")
        if topic == GRANTS_TOPIC:
            self._grants.pop(key, None)
            self._refused.pop(key, None)
            self._refused_records.pop(key, None)
            if value is not None:
                self._judge(message, raw_key, key, value)
            return True
        table = self._tables.setdefault(topic.removeprefix(REFERENCE_PREFIX), {})
        try:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = decode_entry(value)
            return True
        except SerializationError as exc:
            log.error("%s, key %s, cannot be read and is ignored: %s", _where(message), key, exc)
            return False

    def _judge(self, message: Message, raw_key: bytes, key: str, value: bytes) -> None:
        """Put the grant a record holds in force, or refuse it: count it, and say once where
        it is and why (never what it holds)."""
        judged = judge_grant(raw_key, value, self._office_keys, self._catalog)
        if isinstance(judged, CompiledGrant):
            self._grants[key] = judged
            return
        self._refused[key] = replace(judged, where=_where(message))
        self._refused_records[key] = (raw_key, value)
        GRANTS_REFUSED.labels(judged.reason).inc()
        log.error(
            "%s: grant %r%s refused (%s), not in force: %s",
            _where(message),
            key,
            f" v{judged.version}" if judged.version is not None else "",
            judged.reason,
            judged.detail,
        )

    def learn(self, dataset: Dataset) -> None:
        """Add a dataset registered after the engine started to the catalog grants are judged
        against, and judge again the grants refused so far (a grant on a dataset the engine
        did not know yet is refused as invalid); their refusals were counted once already."""
        with self._lock:
            self._catalog = self._catalog.with_datasets([dataset])
            for key, (raw_key, value) in list(self._refused_records.items()):
                judged = judge_grant(raw_key, value, self._office_keys, self._catalog)
                if isinstance(judged, CompiledGrant):
                    self._grants[key] = judged
                    del self._refused[key], self._refused_records[key]
                    log.warning(
                        "grant %r v%d in force now that %s is known",
                        key,
                        judged.version,
                        dataset.topic,
                    )
            self._rebuild()

    def refused(self) -> dict[str, Refusal]:
        """The grant ids whose last record was refused, and why."""
        return dict(self._refused)

    def _rebuild(self) -> None:
        by_topic: dict[str, list[CompiledGrant]] = {}
        for _, compiled in sorted(self._grants.items()):
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


@dataclass(frozen=True)
class KeyedRecord:
    """The last record of one key on a compacted topic (a grant not yet judged, a reference
    table entry), and where it is."""

    key: bytes
    value: bytes
    where: str


@dataclass(frozen=True)
class GrantsOnTopic:
    """The grants topic judged as the engine judges it: the grants in force by id, the ids
    whose last record is refused, and the version each id's last record claims."""

    in_force: dict[str, CompiledGrant] = field(default_factory=dict)
    refused: dict[str, Refusal] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def grant_records(settings: BusSettings, timeout: float = 30.0) -> dict[str, KeyedRecord]:
    """The last record of every grant id on the grants topic now, revoked ones left out
    (read to its end)."""
    return last_records(settings, GRANTS_TOPIC, timeout)


def reference_table(settings: BusSettings, table: str, timeout: float = 30.0) -> dict[str, str]:
    """The entries of reference table ``table`` now (empty if it has none); an entry that
    cannot be read is left out, as the engine leaves it out."""
    entries = {}
    for key, record in last_records(settings, f"{REFERENCE_PREFIX}{table}", timeout).items():
        with contextlib.suppress(SerializationError):
            entries[key] = decode_entry(record.value)
    return entries


def last_records(
    settings: BusSettings, topic: str, timeout: float = 30.0
) -> dict[str, KeyedRecord]:
    """The last record of every key of a compacted ``topic`` now, deleted keys left out
    (read to its end; empty if the topic does not exist)."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": f"xbus-compacted-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
    )
    found: dict[str, KeyedRecord] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return found
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
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
            raw_key, value = message.key() or b"", message.value()
            key = raw_key.decode(errors="replace")
            if value is None:
                found.pop(key, None)
            else:
                found[key] = KeyedRecord(raw_key, value, _where(message))
            if (message.offset() or 0) + 1 >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()
    return found


def current_grants(
    settings: BusSettings,
    catalog: Catalog,
    office_keys: Sequence[Ed25519PublicKey] | None = None,
    timeout: float = 30.0,
) -> GrantsOnTopic:
    """The grants topic now, each record judged with ``judge_grant`` as the engine judges it,
    with ``office_keys`` (default: ``office_public_keys(settings)``)."""
    keys = office_public_keys(settings) if office_keys is None else office_keys
    judged = GrantsOnTopic()
    for grant_id, record in grant_records(settings, timeout).items():
        judged.versions[grant_id] = claimed_version(record.value)
        result = judge_grant(record.key, record.value, keys, catalog)
        if isinstance(result, CompiledGrant):
            judged.in_force[grant_id] = result
        else:
            judged.refused[grant_id] = replace(result, where=record.where)
    return judged


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
