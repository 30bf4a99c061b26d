"""The bus's Prometheus metrics, defined once, and the ``/metrics`` endpoint of every process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_PUBLISHED = Counter(
    "xbus_events_published_total",
    "Change events a department published and Kafka acknowledged.",
    ["department", "dataset"],
)
EVENTS_REJECTED = Counter(
    "xbus_events_rejected_total",
    "Change events not published, by why: invalid_record, unknown_dataset, foreign_dataset, "
    "schema_not_registered, registry_unavailable, broker_unreachable, delivery_failed, "
    "unauthorized, too_large.",
    ["department", "dataset", "reason"],
)
PUBLISH_LATENCY = Histogram(
    "xbus_publish_latency_seconds",
    "Time from handing an event to the producer to Kafka's acknowledgement.",
    ["department", "dataset"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS_DELIVERED = Counter(
    "xbus_events_delivered_total",
    "Events delivered to a subscriber: written to its topic by the engine (connector=topic) "
    "or handed to its endpoint by a connector.",
    ["subscriber", "dataset", "connector"],
)
EVENTS_FILTERED = Counter(
    "xbus_events_filtered_total",
    "Events a grant's row filter kept from its subscriber.",
    ["subscriber", "dataset"],
)
EVENTS_DENIED = Counter(
    "xbus_events_denied_total",
    "Events a grant did not cover: operation not granted, not yet valid, or expired.",
    ["subscriber", "dataset", "reason"],
)
MASKS_APPLIED = Counter(
    "xbus_masks_applied_total",
    "Field values masked on their way to a subscriber.",
    ["subscriber", "dataset", "mask"],
)
DEAD_LETTERS = Counter(
    "xbus_dead_letters_total",
    "Records the engine could not process, sent to the dead-letter topic.",
    ["reason"],
)
ENGINE_LATENCY = Histogram(
    "xbus_engine_processing_seconds",
    "Time the engine spends on one source event, from receiving it to its writes being "
    "acknowledged.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
ENGINE_VIEWS_ENCODED_WHOLE = Counter(
    "xbus_engine_views_encoded_whole_total",
    "Views the engine encoded whole (the reference path) instead of splicing them from the "
    "source bytes: a writer schema or grant a view plan does not cover, or a record its plan "
    "failed on.",
    ["subscriber", "dataset"],
)
ENGINE_WRITES_REFUSED = Counter(
    "xbus_engine_writes_refused_total",
    "Writes of the engine Kafka refused or did not acknowledge in time; their batches are "
    "routed again.",
)
ENGINE_PARTITIONS = Gauge(
    "xbus_engine_assigned_partitions",
    "Source-topic partitions assigned to this engine worker.",
)
GRANTS_IN_FORCE = Gauge(
    "xbus_grants_in_force",
    "Grants applied and valid now.",
)
GRANT_VERSION = Gauge(
    "xbus_grant_version",
    "The version of each grant this worker applies.",
    ["grant", "subscriber", "dataset"],
)
GRANT_EXPIRY = Gauge(
    "xbus_grant_seconds_until_expiry",
    "Seconds until a grant's valid_until (negative once expired).",
    ["grant", "subscriber", "dataset"],
)
GRANTS_REFUSED = Counter(
    "xbus_engine_grants_refused",
    "Grants-topic records the engine refused to enforce, by why: unsigned, bad_signature "
    "(not the office's signature over that id, version and content), invalid (fails "
    "validation against the engine's catalog), unreadable. The grant id is then out of force.",
    ["reason"],
)
END_TO_END_LATENCY = Histogram(
    "xbus_end_to_end_latency_seconds",
    "Time from an event's ts_ms to its delivery.",
    ["subscriber", "connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

CONNECTOR_RETRIES = Counter(
    "xbus_connector_retries_total",
    "Deliveries a connector attempted again after a retriable failure.",
    ["subscriber", "connector"],
)
CONNECTOR_FAILURES = Counter(
    "xbus_connector_failures_total",
    "Failed delivery attempts, by why: timeout, connection, http_<status>, database, "
    "registry_unavailable, ...",
    ["subscriber", "connector", "reason"],
)
CONNECTOR_DEAD_LETTERS = Counter(
    "xbus_connector_dead_letters_total",
    "Events a connector put on the subscriber's dead-letter topic, by why.",
    ["subscriber", "connector", "reason"],
)
CONNECTOR_LAG = Gauge(
    "xbus_connector_lag_events",
    "Events on a subscriber topic partition not yet delivered by the connector.",
    ["subscriber", "connector", "topic", "partition"],
)
CONNECTOR_OLDEST_UNDELIVERED = Gauge(
    "xbus_connector_oldest_undelivered_timestamp_seconds",
    "When the engine wrote the oldest event a connector holds and has not yet delivered (Unix "
    "time; 0 while it holds none): time() minus it is how long that event has waited.",
    ["subscriber", "connector"],
)
CONNECTOR_PAUSED = Gauge(
    "xbus_connector_paused",
    "1 while a connector holds its partitions because the target is unavailable.",
    ["subscriber", "connector"],
)

SSE_CLIENTS = Gauge("xbus_sse_clients", "Clients connected to the live stream.", ["subscriber"])
SSE_CLIENTS_CUT_OFF = Counter(
    "xbus_sse_clients_cut_off_total",
    "Stream clients cut off because they took no data for slow_client_timeout seconds.",
    ["subscriber"],
)
SSE_STREAMS_REFUSED = Counter(
    "xbus_sse_streams_refused_total",
    "Stream requests refused by the live stream, by reason (too_many_streams, unauthorized).",
    ["reason"],
)
SSE_STREAMS_ENDED_REVOKED = Counter(
    "xbus_sse_streams_revoked_total",
    "Open streams the live stream ended because their token was revoked or expired.",
    ["subscriber"],
)
GATEWAY_RATE_LIMITED = Counter(
    "xbus_gateway_rate_limited_total",
    "Gateway requests refused with 429 because their key went over its rate.",
    ["department"],
)

CDC_EVENTS_BRIDGED = Counter(
    "xbus_cdc_events_bridged_total",
    "Records captured from a department's database (Debezium) published as change events of "
    "their dataset and acknowledged.",
    ["department", "dataset", "op"],
)
CDC_EVENTS_REJECTED = Counter(
    "xbus_cdc_events_rejected_total",
    "Captured records the CDC bridge sent to the department's CDC dead letters, by why.",
    ["department", "dataset", "reason"],
)
CDC_LAG = Gauge(
    "xbus_cdc_lag_events",
    "Captured records on a source's cdc.* partition the bridge has not yet published.",
    ["department", "dataset", "partition"],
)
CDC_COMMIT_TO_PUBLISH = Histogram(
    "xbus_cdc_commit_to_publish_seconds",
    "From a change's commit in the department's database to Kafka's acknowledgement of its "
    "event on gov.* (snapshot reads not counted).",
    ["department", "dataset"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` from a background thread; port 0 serves nothing."""
    if port:
        start_http_server(port, addr=host)
