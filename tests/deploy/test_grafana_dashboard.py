"""The Grafana dashboard in deploy/grafana: the committed JSON is what its generator makes,
every panel says what it shows and queries something, and the compose stack provisions it.
That its queries name only metrics the components export is checked against live endpoints
in tests/cli/test_status.py."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

import yaml

from tests.support.checkout import ROOT
from tests.support.promql import metric_names

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "xbus.json"


def generator() -> ModuleType:
    """deploy/grafana/dashboard.py, the dashboard's generator (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("xbus_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_queries() -> dict[str, list[str]]:
    """Each panel's title and its PromQL expressions, from the committed JSON."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])] for p in panels if p["type"] != "row"
    }


def test_the_committed_dashboard_is_what_the_generator_makes() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == generator().render(), (
        "deploy/grafana/dashboards/xbus.json is stale: run `python deploy/grafana/dashboard.py`"
    )


def test_every_panel_describes_itself_and_queries_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    for title, queries in dashboard_queries().items():
        panel = next(p for p in panels if p["title"] == title)
        assert panel["description"], title
        assert queries and all(metric_names(q) for q in queries), title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title


def test_the_panels_cover_what_an_operator_watches() -> None:
    named = {
        n for queries in dashboard_queries().values() for q in queries for n in metric_names(q)
    }
    assert {
        "xbus_events_published_total",
        "xbus_events_delivered_total",
        "xbus_events_filtered_total",
        "xbus_events_denied_total",
        "xbus_masks_applied_total",
        "xbus_dead_letters_total",
        "xbus_connector_dead_letters_total",
        "xbus_connector_lag_events",
        "xbus_end_to_end_latency_seconds_bucket",
        "xbus_grant_seconds_until_expiry",
        "xbus_engine_writes_refused_total",
        "xbus_engine_grants_refused_total",
        "kafka_server_replicamanager_underreplicatedpartitions",
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "kafka_controller_kafkacontroller_activecontrollercount",
        "kafka_server_brokertopicmetrics_bytesin_total",
        "kafka_server_brokertopicmetrics_bytesout_total",
    } <= named


def test_promql_names_are_read_past_functions_labels_and_ranges() -> None:
    assert metric_names(
        'time() - min by (subscriber, le) (rate(x_total{connector="a(b)"}[$__rate_interval]))'
        " > 0 and on (job) up"
    ) == {"x_total", "up"}


def test_the_compose_stack_provisions_the_dashboard_and_its_datasource() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    deploy = ROOT / "deploy"
    provisioning = (deploy / mounts["/etc/grafana/provisioning"]).resolve()
    dashboards = (deploy / mounts["/var/lib/grafana/dashboards"]).resolve()
    assert dashboards == DASHBOARD.parent
    provider = yaml.safe_load((provisioning / "dashboards" / "xbus.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    prometheus = compose["services"]["prometheus"]
    assert any(v.startswith("./prometheus/alerts.yml:") for v in prometheus["volumes"])
