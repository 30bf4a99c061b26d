"""The bus's Prometheus metrics, defined once, and the ``/metrics`` endpoint of every process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

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
END_TO_END_LATENCY = Histogram(
    "xbus_end_to_end_latency_seconds",
    "Time from an event's ts_ms to its delivery.",
    ["subscriber", "connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` from a background thread; port 0 serves nothing."""
    if port:
        start_http_server(port, addr=host)
