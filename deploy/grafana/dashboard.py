"""The xbus Grafana dashboard, as code: ``python deploy/grafana/dashboard.py`` writes
``deploy/grafana/dashboards/xbus.json``, which Grafana provisions (docker-compose) or an
operator imports. Edit this file, never the JSON: ``tests/deploy/test_grafana_dashboard.py``
fails when the JSON is not what this file generates.

Built with grafana-foundation-sdk (a dev dependency), for Grafana 11."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef

OUTPUT = Path(__file__).parent / "dashboards" / "xbus.json"
UID = "xbus-overview"
# The datasource is chosen with the dashboard's variable: any Prometheus that scrapes xbus.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def _series(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str,
    *,
    width: int = 12,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time-series panel of one or more PromQL queries, each ``(expr, legend)``."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .line_width(1)
    )
    if stacked:
        panel = panel.fill_opacity(40)
    for number, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + number)))
    return panel


def _stat(
    title: str, description: str, expr: str, legend: str, unit: str, *, width: int = 6
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(5)
        .with_target(_query(expr, legend))
    )


def build() -> dashboard.Dashboard:
    """The dashboard: flow, delivery, latency, grants and the engine, the broker."""
    return (
        dashboard.Dashboard("xbus")
        .uid(UID)
        .description(
            "The city's data exchange bus: what departments publish, what each subscriber "
            "receives and waits for, grants, the engine and the Kafka brokers."
        )
        .tags(["xbus", "kafka"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_row(dashboard.Row("Flow"))
        .with_panel(
            _series(
                "Published per department",
                "Change events each department published and Kafka acknowledged, per second "
                "(SDK, gateway and `xbus publish` together).",
                [
                    (
                        "sum by (department) (rate(xbus_events_published_total[$__rate_interval]))",
                        "{{department}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            _series(
                "Delivered, filtered and denied per subscriber",
                "Per second: what the engine wrote to each subscriber's topic (delivered), "
                "what a grant's row filter kept back (filtered), what no grant allowed "
                "(denied: expired, not yet valid, operation not granted).",
                [
                    (
                        "sum by (subscriber) (rate(xbus_events_delivered_total"
                        '{connector="topic"}[$__rate_interval]))',
                        "{{subscriber}} delivered",
                    ),
                    (
                        "sum by (subscriber) (rate(xbus_events_filtered_total[$__rate_interval]))",
                        "{{subscriber}} filtered",
                    ),
                    (
                        "sum by (subscriber) (rate(xbus_events_denied_total[$__rate_interval]))",
                        "{{subscriber}} denied",
                    ),
                ],
                "reqps",
            )
        )
        .with_panel(
            _series(
                "Masks applied",
                "Field values masked on their way to a subscriber, per second, by mask.",
                [
                    (
                        "sum by (subscriber, mask) "
                        "(rate(xbus_masks_applied_total[$__rate_interval]))",
                        "{{subscriber}} {{mask}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            _series(
                "Dead letters",
                "Records set aside on a dead-letter topic, per reason: by the engine "
                "(undecodable, not a change event, a grant that failed) and by the connectors "
                "(what a target refused for good).",
                [
                    (
                        "sum by (reason) (increase(xbus_dead_letters_total[$__rate_interval]))",
                        "engine {{reason}}",
                    ),
                    (
                        "sum by (subscriber, connector, reason) "
                        "(increase(xbus_connector_dead_letters_total[$__rate_interval]))",
                        "{{subscriber}} {{connector}} {{reason}}",
                    ),
                ],
                "short",
            )
        )
        .with_row(dashboard.Row("Delivery"))
        .with_panel(
            _series(
                "Connector lag",
                "Events on each subscriber's topics that its connector has not delivered yet.",
                [
                    (
                        "sum by (subscriber, connector) (xbus_connector_lag_events)",
                        "{{subscriber}} {{connector}}",
                    )
                ],
                "short",
            )
        )
        .with_panel(
            _series(
                "End-to-end latency",
                "From the department's event time (ts_ms) to delivery by a connector: p50, p95 "
                "and p99 over all subscribers and connectors.",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        "(rate(xbus_end_to_end_latency_seconds_bucket[$__rate_interval])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                "s",
            )
        )
        .with_panel(
            _series(
                "Oldest undelivered event",
                "How long the oldest event each connector holds undelivered has waited since "
                "the engine wrote it; it grows while a target is down.",
                [
                    (
                        "time() - min by (subscriber, connector) "
                        "(xbus_connector_oldest_undelivered_timestamp_seconds > 0)",
                        "{{subscriber}} {{connector}}",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            _series(
                "Connector failures and retries",
                "Failed delivery attempts per reason, and attempts made again, per second.",
                [
                    (
                        "sum by (subscriber, connector, reason) "
                        "(rate(xbus_connector_failures_total[$__rate_interval]))",
                        "{{subscriber}} {{connector}} {{reason}}",
                    ),
                    (
                        "sum by (subscriber, connector) "
                        "(rate(xbus_connector_retries_total[$__rate_interval]))",
                        "{{subscriber}} {{connector}} retries",
                    ),
                ],
                "reqps",
            )
        )
        .with_row(dashboard.Row("Grants and engine"))
        .with_panel(
            _stat(
                "Grants in force",
                "Grants the engine applies that are valid now.",
                "max(xbus_grants_in_force)",
                "in force",
                "short",
            )
        )
        .with_panel(
            _stat(
                "Next grant to expire",
                "The soonest valid_until among the grants in force.",
                "min(xbus_grant_seconds_until_expiry > 0)",
                "expires in",
                "s",
            )
        )
        .with_panel(
            _series(
                "Grants about to expire",
                "Seconds until each grant's valid_until, for grants expiring within 30 days "
                "(the XbusGrantExpiringSoon alert fires at 7).",
                [
                    (
                        "min by (grant, subscriber, dataset) "
                        "(xbus_grant_seconds_until_expiry) < 30 * 86400",
                        "{{grant}} ({{subscriber}} on {{dataset}})",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            _series(
                "Engine refusals",
                "Writes Kafka refused or did not acknowledge (routed again), and grant records "
                "the engine refused to enforce, per reason.",
                [
                    (
                        "sum(increase(xbus_engine_writes_refused_total[$__rate_interval]))",
                        "writes refused",
                    ),
                    (
                        "sum by (reason) "
                        "(increase(xbus_engine_grants_refused_total[$__rate_interval]))",
                        "grants refused: {{reason}}",
                    ),
                ],
                "short",
            )
        )
        .with_row(dashboard.Row("Kafka brokers"))
        .with_panel(
            _series(
                "Bytes in and out per topic",
                "What producers write to and consumers read from each topic, per second.",
                [
                    (
                        "sum by (topic) "
                        "(rate(kafka_server_brokertopicmetrics_bytesin_total[$__rate_interval]))",
                        "{{topic}} in",
                    ),
                    (
                        "sum by (topic) "
                        "(rate(kafka_server_brokertopicmetrics_bytesout_total[$__rate_interval]))",
                        "{{topic}} out",
                    ),
                ],
                "Bps",
                width=24,
            )
        )
        .with_panel(
            _stat(
                "Active controllers",
                "Exactly one is healthy.",
                "sum(kafka_controller_kafkacontroller_activecontrollercount)",
                "active controllers",
                "short",
                width=8,
            )
        )
        .with_panel(
            _stat(
                "Offline partitions",
                "Partitions without a leader: their reads and writes fail.",
                "max(kafka_controller_kafkacontroller_offlinepartitionscount)",
                "offline",
                "short",
                width=8,
            )
        )
        .with_panel(
            _stat(
                "Under-replicated partitions",
                "Partitions with fewer in-sync replicas than replicas, over all brokers.",
                "sum(kafka_server_replicamanager_underreplicatedpartitions)",
                "under-replicated",
                "short",
                width=8,
            )
        )
    )


def render() -> str:
    """The dashboard as the JSON Grafana reads, keys in a stable order, ending in a newline."""
    model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    # Grafana tells panels apart by id: each gets the next number, in the order laid out.
    for number, panel in enumerate(model["panels"], 1):
        panel["id"] = number
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the dashboard's JSON next to this file (``dashboards/xbus.json``)."""
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
