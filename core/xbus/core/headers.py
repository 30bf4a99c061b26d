"""The names of the Kafka headers xbus writes, for every component that writes or reads
them: on delivered records, on dead letters (engine and connectors), in the audit."""

from __future__ import annotations

from collections.abc import Sequence

Headers = Sequence[tuple[str, str | bytes | None]]

# On every record the engine writes for a subscriber.
EVENT_ID = "xbus-event-id"
GRANT_ID = "xbus-grant-id"
GRANT_VERSION = "xbus-grant-version"

# Where a record came from (dead letters and audit records).
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
