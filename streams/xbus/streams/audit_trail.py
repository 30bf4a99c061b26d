"""The audit trail on Kafka: where a chain lives, its head read back from the topic, and the
whole trail read for ``xbus audit verify``.

A chain's records all carry its id as key, and the engine's producer partitions keys with
murmur2 as Kafka's Java client does (``BusSettings.producer_config``), so a chain lives in
partition ``murmur2(chain) % partitions``: its head is found by reading that partition
backwards from its end, in growing windows, until the chain's last record turns up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from xbus.core.settings import BusSettings
from xbus.core.topics import AUDIT_READER_GROUP_PREFIX, AUDIT_TOPIC
from xbus.streams.audit import AuditEntry, Head

log = logging.getLogger(__name__)

FIRST_WINDOW = 2_000
LARGEST_WINDOW = 256_000
READ_TIMEOUT = 30.0


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (as ``org.apache.kafka.common.utils.Utils.murmur2``
    and librdkafka's ``murmur2`` partitioner compute it), as an unsigned 32-bit number."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length & ~3
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    rest = length - whole
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h = ((h ^ data[whole]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a record keyed ``key`` goes to among ``partitions`` (Java's default
    partitioner, librdkafka's ``murmur2_random``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _reader(settings: BusSettings) -> Consumer:
    """A consumer that only reads assigned partitions: no group, nothing committed."""
    return Consumer(
        settings.consumer_config(
            f"{AUDIT_READER_GROUP_PREFIX}{uuid.uuid4()}",
            **{"enable.partition.eof": False, "fetch.wait.max.ms": 50},
        )
    )


def _read(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> Iterator[Any]:
    """The messages of ``topic[partition]`` from ``start`` up to (not including) ``end``."""
    if start >= end:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + READ_TIMEOUT
    try:
        while True:
            messages = consumer.consume(1000, timeout=0.5)
            if not messages and time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic}[{partition}] from offset {start} to {end}: "
                    f"nothing arrived for {READ_TIMEOUT:g}s"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                at = message.offset() or 0
                if at >= end:
                    return
                deadline = time.monotonic() + READ_TIMEOUT
                yield message
                if at >= end - 1:
                    return
    finally:
        consumer.unassign()


def audit_partitions(consumer: Consumer, topic: str) -> int:
    """How many partitions ``topic`` has (0: it does not exist)."""
    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return 0
    return len(found.partitions)


def recover_heads(
    settings: BusSettings, chains: set[str], topic: str = AUDIT_TOPIC
) -> dict[str, Head]:
    """The last record (seq and hash) of each of ``chains`` on ``topic``; a chain with no
    record there is left out (it starts at seq 0)."""
    started = time.perf_counter()
    consumer = _reader(settings)
    found: dict[str, Head] = {}
    read = 0
    try:
        count = audit_partitions(consumer, topic)
        if count == 0:
            return found
        wanted: dict[int, set[bytes]] = {}
        for chain in chains:
            key = chain.encode()
            wanted.setdefault(partition_of(key, count), set()).add(key)
        for partition, keys in sorted(wanted.items()):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            end, window = high, FIRST_WINDOW
            while keys and end > low:
                start = max(low, end - window)
                last: dict[bytes, Head] = {}
                for message in _read(consumer, topic, partition, start, end):
                    read += 1
                    key = message.key()
                    if key in keys:
                        last[key] = _head_of(message.value(), topic, partition, message.offset())
                for key, head in last.items():
                    found[key.decode()] = head
                keys -= last.keys()
                end, window = start, min(window * 2, LARGEST_WINDOW)
    finally:
        consumer.close()
    log.info(
        "recovered the heads of %d of %d audit chains in %.3fs (%d records read)",
        len(found),
        len(chains),
        time.perf_counter() - started,
        read,
    )
    return found


def _head_of(value: bytes | None, topic: str, partition: int, offset: int) -> Head:
    try:
        record = json.loads(value or b"")
        return Head(int(record["seq"]), str(record["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"the audit record at {topic}[{partition}]@{offset} is not a chain record ({exc}); "
            "no worker can extend its chain: run `xbus audit verify`"
        ) from exc


def read_trail(
    settings: BusSettings,
    topic: str = AUDIT_TOPIC,
    *,
    partition: int | None = None,
    offset: int | None = None,
    since: dt.datetime | None = None,
) -> Iterator[AuditEntry]:
    """Every record of ``topic`` up to its end as of now, partition after partition: from the
    oldest kept, or from ``offset`` of ``partition`` (that partition alone), or from the first
    record at or after ``since``. Raises ``LookupError`` if the topic or partition does not
    exist."""
    consumer = _reader(settings)
    try:
        count = audit_partitions(consumer, topic)
        if count == 0:
            raise LookupError(f"no topic {topic!r} on {settings.bootstrap_servers}")
        if partition is not None and not 0 <= partition < count:
            raise LookupError(f"{topic} has partitions 0 to {count - 1}, not {partition}")
        partitions = [partition] if partition is not None else list(range(count))
        starts: dict[int, int] = {}
        if since is not None:
            asked = [TopicPartition(topic, p, int(since.timestamp() * 1000)) for p in partitions]
            for tp in consumer.offsets_for_times(asked, timeout=10):
                starts[tp.partition] = tp.offset  # OFFSET_END (-1) if nothing that late
        for p in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            start = low
            if p == partition and offset is not None:
                start = max(low, offset)
            elif p in starts:
                start = high if starts[p] in (OFFSET_END, -1) else max(low, starts[p])
            for message in _read(consumer, topic, p, start, high):
                yield AuditEntry(p, message.offset(), message.key(), message.value())
    finally:
        consumer.close()
