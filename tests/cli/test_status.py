"""``xbus status --once`` on a live bus: the engine, a file connector, the demo department and
the ingest gateway running as real processes; read from their metrics endpoints, then from a
real Prometheus scraping them. The Grafana dashboard's queries are checked against the same
live endpoints."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Bus
from tests.deploy.test_grafana_dashboard import dashboard_queries
from tests.producers.test_gateway import start_gateway
from tests.support.checkout import ROOT
from tests.support.components import component, engine, metrics_port, run_xbus, wait_for
from tests.support.promql import metric_names
from xbus.core.bus_status import exported_names
from xbus.deploy.process import free_port

pytestmark = pytest.mark.broker

DEPARTMENT = "market_regulation"
SUBSCRIBER = "tax_bureau"
# The broker's metrics the dashboard reads, as the JMX exporter names them
# (kafka_server_*, kafka_controller_*); checked against the exporter's rules instead where
# its rules file is in the tree.
BROKER_METRICS = {
    "kafka_server_replicamanager_underreplicatedpartitions",
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "kafka_controller_kafkacontroller_activecontrollercount",
    "kafka_server_brokertopicmetrics_bytesin_total",
    "kafka_server_brokertopicmetrics_bytesout_total",
}
JMX_RULES = (
    ROOT / "deploy" / "xbus" / "deploy" / "resources" / "kafka" / "jmx-exporter.yml",
    ROOT / "deploy" / "prometheus" / "kafka-jmx.yml",
)


@dataclass
class LiveBus:
    bus: Bus
    endpoints: dict[str, str]
    connector: subprocess.Popen[bytes]
    log_dir: Path


def _value(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` on the metrics page at ``url``."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def live(granted: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBus]:
    """The engine, a file connector for two subscribers, the demo department publishing two
    licences a second, and the gateway; once the connector has delivered."""
    log_dir = tmp_path_factory.mktemp("status")
    ports = {name: metrics_port() for name in ("engine", "connector", "demo")}
    run = uuid.uuid4().hex[:8]
    with ExitStack() as running:
        running.enter_context(engine(granted, log_dir, f"status-{run}", port=ports["engine"]))
        connector = running.enter_context(
            component(
                granted,
                log_dir,
                "connector",
                "connector",
                "file",
                *("--subscriber", SUBSCRIBER, "--subscriber", "open_data"),
                *("--dir", str(log_dir / "out"), "--group", f"status-connector-{run}"),
                *("--metrics-port", str(ports["connector"])),
            )
        )
        running.enter_context(
            component(
                granted,
                log_dir,
                "demo",
                "demo",
                "--rate",
                "2",
                "--metrics-port",
                str(ports["demo"]),
            )
        )
        gateway = running.enter_context(contextmanager(start_gateway)(granted, log_dir, "gateway"))
        endpoints = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
        endpoints["gateway"] = f"{gateway.metrics}/metrics"
        wait_for(
            lambda: _value(
                endpoints["connector"], "xbus_events_delivered_total", subscriber=SUBSCRIBER
            ),
            180,
            f"the connector delivering to {SUBSCRIBER}",
        )
        yield LiveBus(granted, endpoints, connector, log_dir)


def _status(live: LiveBus, *args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so that no table cell is wrapped or cut.
    return run_xbus({**live.bus.env(), "COLUMNS": "220"}, "status", "--once", *args, timeout=60)


def _cells(output: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def _number(cell: str) -> float:
    return float(cell.removesuffix("/s").replace(",", ""))


def _endpoint_args(live: LiveBus) -> list[str]:
    return [a for name, url in live.endpoints.items() for a in ("--metrics", f"{name}={url}")]


def _assert_the_bus_flows(output: str) -> None:
    department = _cells(output, DEPARTMENT)
    assert _number(department[1]) > 0, f"no publish rate for {DEPARTMENT}:\n{output}"
    assert _number(department[2]) > 0
    subscriber = _cells(output, SUBSCRIBER)
    # subscriber | to topic/s | delivered/s | delivered | filtered/s | denied/s | lag | ...
    assert _number(subscriber[3]) > 0, f"nothing delivered to {SUBSCRIBER}:\n{output}"
    assert _number(subscriber[2]) > 0, f"no delivery rate for {SUBSCRIBER}:\n{output}"
    assert re.search(r"Grants\s+in force: [1-9]", output), output


def test_prometheus_mode_reads_a_real_prometheus_scraping_the_components(
    live: LiveBus, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: `make install` installs Debian's prometheus")
    jobs = {
        "xbus-engine": [live.endpoints["engine"]],
        "xbus-connector": [live.endpoints["connector"]],
        "xbus-publisher": [live.endpoints["demo"], live.endpoints["gateway"]],
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [httpx.URL(u).netloc.decode() for u in urls]}],
            }
            for job, urls in jobs.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "prometheus.log", "wb") as log:
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def query(expression: str) -> list[dict]:  # type: ignore[type-arg]
            try:
                answer = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5)
            except httpx.HTTPError:
                return []
            return answer.json()["data"]["result"] if answer.status_code == 200 else []

        wait_for(lambda: len(query("up == 1")) == 4, 60, "Prometheus scraping the 4 components")
        wait_for(
            lambda: query(
                f'rate(xbus_events_published_total{{department="{DEPARTMENT}"}}[30s]) > 0'
            ),
            60,
            "a publish rate in Prometheus",
        )
        shown = _status(live, "--prometheus", url, "--window", "30s")
    except BaseException:
        print((tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        prometheus.terminate()
        prometheus.wait(30)

    assert shown.returncode == 0, shown.stderr
    assert f"from Prometheus at {url}; rates over 30s" in shown.stdout
    _assert_the_bus_flows(shown.stdout)
    for job in jobs:
        assert _cells(shown.stdout, job)[2] == "up", shown.stdout


def test_prometheus_out_of_reach_is_told_and_fails(live: LiveBus) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    shown = _status(live, "--prometheus", url)

    assert shown.returncode == 1
    assert f"Prometheus at {url} did not answer" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_every_dashboard_query_names_a_metric_the_live_components_export(live: LiveBus) -> None:
    exported: set[str] = set()
    for url in live.endpoints.values():
        exported |= exported_names(httpx.get(url, timeout=5).text)
    named = {
        name
        for queries in dashboard_queries().values()
        for q in queries
        for name in metric_names(q)
    }
    xbus = {n for n in named if n.startswith("xbus_")}
    broker = {n for n in named if n.startswith("kafka_")}

    assert xbus and xbus - exported == set(), "dashboard queries of metrics no component exports"
    assert named - xbus - broker == set(), "dashboard queries of metrics from nowhere"
    rules = next((path for path in JMX_RULES if path.exists()), None)
    if rules is None:
        assert broker <= BROKER_METRICS
        return
    made = [
        _jmx_name(rule) for rule in yaml.safe_load(rules.read_text())["rules"] if "name" in rule
    ]
    for name in broker:
        # A COUNTER rule's metric gets _total from the exporter.
        assert any(m.fullmatch(name) or m.fullmatch(name.removesuffix("_total")) for m in made), (
            f"{name} is made by no rule of {rules.relative_to(ROOT)}"
        )


def _jmx_name(rule: dict[str, str]) -> re.Pattern[str]:
    """The metric names a JMX exporter rule can make (output names lowercased): each ``$n``
    of its ``name`` is what group n of its ``pattern`` matches, an alternation of words
    taken as those words."""
    groups = re.findall(r"\(([^()]*)\)", rule["pattern"])

    def group(match: re.Match[str]) -> str:
        text = groups[int(match.group(1)) - 1]
        if re.fullmatch(r"\w+(\|\w+)*", text):
            return "(" + text.lower() + ")"
        return "[a-z0-9_]+"

    return re.compile(re.sub(r"\\\$(\d+)", group, re.escape(rule["name"].lower())))


def test_once_shows_departments_subscribers_and_components_then_a_stopped_one_down(
    live: LiveBus,
) -> None:
    shown = _status(live, *_endpoint_args(live))
    print(shown.stdout)

    assert shown.returncode == 0, shown.stderr
    _assert_the_bus_flows(shown.stdout)
    for name in live.endpoints:
        assert _cells(shown.stdout, name)[2] == "up", shown.stdout

    live.connector.terminate()
    live.connector.wait(30)
    shown = _status(live, *_endpoint_args(live))

    assert shown.returncode == 0, shown.stderr
    connector = _cells(shown.stdout, "connector")
    assert connector[2] == "down", shown.stdout
    assert "refused" in connector[3].lower()
    assert _cells(shown.stdout, "engine")[2] == "up"


def test_once_with_nothing_answering_says_so_and_fails(live: LiveBus) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"

    shown = _status(live, "--metrics", f"engine={nowhere}")

    assert shown.returncode == 1
    assert "no component of the bus answered" in shown.stderr
    assert nowhere in shown.stderr
    assert _cells(shown.stdout, "engine")[2] == "down"
