"""The snapshot ``xbus status`` shows, computed from metric samples: rates between two
scrapes, sums over processes, the oldest undelivered event's age, the next grant to expire,
Prometheus' answers and what the endpoints declare."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

import xbus.core.metrics  # noqa: F401  (registers every xbus metric)
from xbus.core.bus_status import (
    READ,
    Component,
    Reading,
    Sample,
    counter_rates,
    exported_names,
    parse_exposition,
    prometheus_targets,
    prometheus_vector,
    snapshot,
)
from xbus.core.metric_sources import Endpoint

ENGINE_PAGE = """\
# HELP xbus_events_delivered_total Events delivered to a subscriber.
# TYPE xbus_events_delivered_total counter
xbus_events_delivered_total{connector="topic",dataset="d",subscriber="tax_bureau"} 120.0
xbus_events_delivered_created{connector="topic",dataset="d",subscriber="tax_bureau"} 1.7e9
# HELP xbus_events_filtered_total Events a grant's row filter kept from its subscriber.
# TYPE xbus_events_filtered_total counter
xbus_events_filtered_total{dataset="business_licence",subscriber="one_stop_centre"} 30.0
# HELP xbus_grants_in_force Grants applied and valid now.
# TYPE xbus_grants_in_force gauge
xbus_grants_in_force 7.0
# HELP xbus_end_to_end_latency_seconds Time from an event's ts_ms to its delivery.
# TYPE xbus_end_to_end_latency_seconds histogram
# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 3.5
"""


def _s(name: str, value: float, source: str = "engine", **labels: str) -> Sample:
    return Sample(name, labels, value, source)


def _reading(values: list[Sample], rates: list[Sample], at: float = 1000.0) -> Reading:
    return Reading(at, "test", "rates over 4 s", [Component("engine", "e", True)], values, rates)


def test_a_metrics_page_gives_the_samples_the_snapshot_reads_and_nothing_else() -> None:
    samples = parse_exposition(ENGINE_PAGE, "engine")

    assert {s.name for s in samples} == {
        "xbus_events_delivered_total",
        "xbus_events_filtered_total",
        "xbus_grants_in_force",
    }
    delivered = next(s for s in samples if s.name == "xbus_events_delivered_total")
    assert delivered.value == 120.0
    assert delivered.label("subscriber") == "tax_bureau"
    assert delivered.source == "engine"


def test_a_page_declares_its_families_with_the_names_prometheus_stores() -> None:
    names = exported_names(ENGINE_PAGE)

    assert "xbus_events_delivered_total" in names
    # A histogram with no sample yet still declares its series.
    assert {
        "xbus_end_to_end_latency_seconds_bucket",
        "xbus_end_to_end_latency_seconds_sum",
        "xbus_end_to_end_latency_seconds_count",
    } <= names
    assert "xbus_events_delivered" not in names


def test_rates_between_two_scrapes_count_new_series_from_zero_and_resets_from_zero() -> None:
    before = [
        _s("xbus_events_published_total", 100, "demo", department="health"),
        _s("xbus_events_published_total", 500, "gateway", department="health"),
        _s("xbus_connector_lag_events", 9, "connector", subscriber="tax_bureau"),
    ]
    after = [
        _s("xbus_events_published_total", 140, "demo", department="health"),
        # The gateway restarted: its counter began again.
        _s("xbus_events_published_total", 8, "gateway", department="health"),
        _s("xbus_events_published_total", 12, "demo", department="civil_affairs"),
        _s("xbus_connector_lag_events", 3, "connector", subscriber="tax_bureau"),
    ]

    rates = {(s.source, s.label("department")): s.value for s in counter_rates(before, after, 4)}

    assert rates == {
        ("demo", "health"): 10.0,
        ("gateway", "health"): 2.0,
        ("demo", "civil_affairs"): 3.0,
    }
    with pytest.raises(ValueError):
        counter_rates(before, after, 0)


def test_departments_sum_every_publisher_and_subscribers_split_engine_and_connector_counts() -> (
    None
):
    values = [
        _s("xbus_events_published_total", 40, "demo", department="health", dataset="a"),
        _s("xbus_events_published_total", 60, "gateway", department="health", dataset="b"),
        _s("xbus_events_delivered_total", 90, "engine", subscriber="tax_bureau", connector="topic"),
        _s("xbus_events_delivered_total", 80, "file", subscriber="tax_bureau", connector="file"),
        _s("xbus_events_delivered_total", 70, "pg", subscriber="tax_bureau", connector="postgres"),
        _s("xbus_connector_lag_events", 4, "file", subscriber="tax_bureau", partition="0"),
        _s("xbus_connector_lag_events", 6, "file", subscriber="tax_bureau", partition="1"),
        # A connector serving two subscribers reports its failures under both, joined.
        _s("xbus_connector_failures_total", 3, "file", subscriber="open_data+tax_bureau"),
        _s("xbus_connector_retries_total", 2, "file", subscriber="open_data+tax_bureau"),
        _s("xbus_events_denied_total", 5, "engine", subscriber="district_cdc", reason="expired"),
    ]
    rates = [
        _s("xbus_events_published_total", 1.5, "demo", department="health", dataset="a"),
        _s("xbus_events_published_total", 0.5, "gateway", department="health", dataset="b"),
        _s("xbus_events_rejected_total", 0.25, "gateway", department="health", reason="x"),
        _s("xbus_events_delivered_total", 2, "engine", subscriber="tax_bureau", connector="topic"),
        _s("xbus_events_delivered_total", 1, "file", subscriber="tax_bureau", connector="file"),
        _s("xbus_events_delivered_total", 1, "pg", subscriber="tax_bureau", connector="postgres"),
        _s("xbus_events_filtered_total", 0.75, "engine", subscriber="tax_bureau"),
        _s("xbus_events_denied_total", 0.5, "engine", subscriber="district_cdc", reason="expired"),
    ]

    bus = snapshot(_reading(values, rates))

    [health] = bus.departments
    assert (health.department, health.published_per_second, health.published) == (
        "health",
        2.0,
        100,
    )
    assert health.rejected_per_second == 0.25
    tax = bus.subscriber("tax_bureau")
    assert tax is not None
    assert (tax.routed_per_second, tax.routed) == (2, 90)
    assert (tax.delivered_per_second, tax.delivered) == (2, 150)
    assert tax.filtered_per_second == 0.75
    assert (tax.lag, tax.failures, tax.retries) == (10, 3, 2)
    open_data = bus.subscriber("open_data")
    assert open_data is not None and (open_data.failures, open_data.lag) == (3, None)
    cdc = bus.subscriber("district_cdc")
    assert cdc is not None and cdc.denied_per_second == 0.5
    assert [s.subscriber for s in bus.subscribers] == ["district_cdc", "open_data", "tax_bureau"]


def test_the_oldest_undelivered_event_is_the_earliest_any_connector_holds() -> None:
    name = "xbus_connector_oldest_undelivered_timestamp_seconds"
    values = [
        _s(name, 940.0, "file", subscriber="tax_bureau", connector="file"),
        _s(name, 990.0, "pg", subscriber="tax_bureau", connector="postgres"),
        # 0: the connector holds nothing.
        _s(name, 0.0, "file", subscriber="open_data", connector="file"),
    ]

    bus = snapshot(_reading(values, [], at=1000.0))

    tax, open_data = bus.subscriber("tax_bureau"), bus.subscriber("open_data")
    assert tax is not None and tax.oldest_waiting_seconds == 60.0
    assert open_data is not None and open_data.oldest_waiting_seconds is None


def test_grants_in_force_come_from_the_engine_and_the_next_expiry_is_the_nearest_ahead() -> None:
    expiry = "xbus_grant_seconds_until_expiry"
    values = [
        # Every process exports the unlabelled gauge; only the engine's is not 0.
        _s("xbus_grants_in_force", 0, "connector"),
        _s("xbus_grants_in_force", 6, "engine"),
        _s(expiry, 86400 * 30, grant="g1", subscriber="tax_bureau", dataset="business_licence"),
        _s(expiry, 3600, grant="g2", subscriber="open_data", dataset="service_request"),
        _s(expiry, -60, grant="g3", subscriber="district_cdc", dataset="vaccination_record"),
    ]

    grants = snapshot(_reading(values, [])).grants

    assert grants.in_force == 6
    assert grants.next_expiry is not None
    assert (grants.next_expiry.grant, grants.next_expiry.seconds) == ("g2", 3600)
    assert grants.expired == 1
    assert snapshot(_reading([], [])).grants.in_force is None


def test_a_snapshot_is_reachable_when_one_component_answered() -> None:
    down = Reading(0, "t", "w", [Component("engine", "e", False, "refused")], [], [])
    assert not snapshot(down).reachable
    mixed = Reading(0, "t", "w", [Component("a", "a", False), Component("b", "b", True)], [], [])
    assert snapshot(mixed).reachable


def test_prometheus_answers_become_samples_and_targets() -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"department": "health", "instance": "127.0.0.1:9101", "job": "x"},
                    "value": [1700000000.1, "2.5"],
                }
            ],
        },
    }
    [rate] = prometheus_vector(answer, "xbus_events_published_total")
    assert (rate.name, rate.value, rate.source) == (
        "xbus_events_published_total",
        2.5,
        "127.0.0.1:9101",
    )

    up = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"__name__": "up", "job": "engine", "instance": "h:9102"},
                    "value": [0, "1"],
                },
                {
                    "metric": {"__name__": "up", "job": "connector", "instance": "h:9103"},
                    "value": [0, "0"],
                },
            ],
        },
    }
    targets = prometheus_targets(prometheus_vector(up))
    assert [(t.name, t.address, t.up) for t in targets] == [
        ("connector", "h:9103", False),
        ("engine", "h:9102", True),
    ]
    with pytest.raises(ValueError, match="bad_data"):
        prometheus_vector({"status": "error", "error": "bad_data: parse error"})


@pytest.mark.parametrize(
    ("given", "name", "url"),
    [
        ("127.0.0.1:9102", "http://127.0.0.1:9102/metrics", "http://127.0.0.1:9102/metrics"),
        ("engine=http://h:9102", "engine", "http://h:9102/metrics"),
        ("http://h:9102/custom?x=1", "http://h:9102/custom?x=1", "http://h:9102/custom?x=1"),
    ],
)
def test_an_endpoint_is_a_url_or_a_named_url(given: str, name: str, url: str) -> None:
    assert Endpoint.parse(given) == Endpoint(name, url)


def test_every_series_the_snapshot_reads_is_one_xbus_exports() -> None:
    declared: set[str] = set()
    for metric in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        declared.update(metric.name + s for s in suffixes.get(metric.type, [""]))
    assert set(READ) - declared == set()
