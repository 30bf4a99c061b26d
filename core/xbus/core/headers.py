"""The names of the Kafka headers xbus writes, for every component that writes or reads
them: on delivered records, on dead letters (engine and connectors), in the audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

Headers = Sequence[tuple[str, str | bytes | None]]

# On every record the engine writes for a subscriber: the event's id, and one header naming
# the grant and the source record (``origin``); two headers, not six, since each header
# costs the producer as much as a small record (docs/grants.md, "Output contract").
EVENT_ID = "xbus-event-id"
ORIGIN = "xbus-origin"

# On dead letters: the grant, and where the record came from.
GRANT_ID = "xbus-grant-id"
GRANT_VERSION = "xbus-grant-version"
SOURCE_TOPIC = "xbus-source-topic"
SOURCE_PARTITION = "xbus-source-partition"
SOURCE_OFFSET = "xbus-source-offset"

# Why a record is a dead letter, and where it was when it failed.
DLQ_REASON = "xbus-dlq-reason"
DLQ_ERROR = "xbus-dlq-error"
DLQ_CONNECTOR = "xbus-dlq-connector"
DLQ_TOPIC = "xbus-dlq-topic"
DLQ_PARTITION = "xbus-dlq-partition"
DLQ_OFFSET = "xbus-dlq-offset"

# A dead letter's error text is cut here: the original bytes travel as the value.
DLQ_ERROR_LIMIT = 1000


class Origin(NamedTuple):
    """What an ``xbus-origin`` header says: the grant (id and version) a record was
    delivered under, and the source record (topic, partition, offset) it was made from."""

    grant: str
    version: int
    topic: str
    partition: int
    offset: int


def origin_grant_part(grant: str, version: int) -> bytes:
    """The start of an ``xbus-origin`` value: the grant's part, the same for every record."""
    return f"grant={grant};version={version};".encode()


def origin_source_part(topic: str, partition: int, offset: int) -> bytes:
    """The end of an ``xbus-origin`` value: the source record's part."""
    return f"topic={topic};partition={partition};offset={offset}".encode()


def read_origin(value: bytes) -> Origin:
    """An ``xbus-origin`` header's value read back
    (``grant=<id>;version=<n>;topic=<t>;partition=<p>;offset=<o>``: grant ids and topic
    names hold no ``;`` or ``=``); ``ValueError`` if it is not one."""
    try:
        parts = dict(item.split("=", 1) for item in value.decode().split(";"))
        return Origin(
            parts["grant"],
            int(parts["version"]),
            parts["topic"],
            int(parts["partition"]),
            int(parts["offset"]),
        )
    except (KeyError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not an xbus-origin header value: {value[:200]!r}") from exc
