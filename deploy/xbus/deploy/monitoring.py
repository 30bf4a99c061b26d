"""The operators' view of the local stack: Prometheus (scraping every xbus process, the broker's
JMX exporter and the node exporter, evaluating the alert rules), Alertmanager and the node
exporter, run from Debian's packages on loopback.

Their configuration is the repository's own (``deploy/prometheus``, ``deploy/alertmanager``),
the files the compose file and the Kubernetes manifests use: Prometheus reads its targets from
``targets/*.json`` next to its configuration, which this module writes for the stack's ports,
and the alert rules from ``alerts.yml``. A test may shorten the intervals and hand Alertmanager a
receiver; nothing else differs from what operators run."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from xbus.deploy.errors import LauncherError
from xbus.deploy.process import ManagedProcess, check_port_free

# deploy/ in the source tree: the launcher runs from a checkout (``make run``).
DEPLOY_DIR = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
ALERTMANAGER_DIR = DEPLOY_DIR / "alertmanager"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
CONSOLE = "xbus.html"

_PROGRAMS = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "node exporter": ("prometheus-node-exporter", "node_exporter"),
}


def program(what: str) -> str:
    """The path of Prometheus, Alertmanager or the node exporter, or a clear error."""
    for name in _PROGRAMS[what]:
        found = shutil.which(name)
        if found:
            return found
    raise LauncherError(
        f"{what} is not installed ({' or '.join(_PROGRAMS[what])} not on PATH): `make install` "
        "installs it from Debian's packages (deploy/install-packages.sh)"
    )


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint Prometheus scrapes: its job (``xbus``, ``kafka``, ``node``, ...), its
    ``host:port`` and the labels its series get (``component`` for xbus processes)."""

    job: str
    address: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)


def write_targets(folder: Path, targets: Iterable[ScrapeTarget], jobs: Iterable[str]) -> None:
    """Write Prometheus' file-discovery files, one per job (an empty list for a job with no
    target); each is replaced whole, so Prometheus never reads half of one."""
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for target in targets:
        by_job[target.job].append({"targets": [target.address], "labels": target.labels})
    folder.mkdir(parents=True, exist_ok=True)
    for job in {*jobs, *by_job}:
        partial = folder / f".{job}.json"
        partial.write_text(json.dumps(by_job.get(job, []), indent=2))
        partial.replace(folder / f"{job}.json")


def prometheus_config(
    folder: Path, *, rules: Sequence[Path], interval: str | None = None
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml for a Prometheus whose configuration lives in
    ``folder``: its rule files and target files named by absolute path, and its scrape and
    evaluation ``interval`` changed if given."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    if interval is not None:
        config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(r) for r in rules]
    discovered = [
        *config["scrape_configs"],
        *config["alerting"]["alertmanagers"],
    ]
    for entry in discovered:
        for sd in entry.get("file_sd_configs", []):
            sd["files"] = [str(folder / f) for f in sd["files"]]
            if interval is not None:
                sd["refresh_interval"] = interval
    return config


def target_jobs() -> list[str]:
    """The jobs whose targets deploy/prometheus/prometheus.yml reads from files."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return [
        Path(name).stem
        for job in config["scrape_configs"]
        for sd in job["file_sd_configs"]
        for name in sd["files"]
    ]


@dataclass
class MonitoringConfig:
    """Where Prometheus, Alertmanager and the node exporter listen and keep their data."""

    host: str = "127.0.0.1"
    prometheus_port: int = 9090
    alertmanager_port: int = 9095
    node_exporter_port: int = 9100
    data_dir: Path = Path(".xbus/data/monitoring")
    run_dir: Path = Path(".xbus/data/run")
    log_dir: Path = Path(".xbus/data/logs")
    start_timeout: float = 60.0
    # A test's shorter scrape and evaluation interval (None: the file's).
    interval: str | None = None
    # The alert rules Prometheus evaluates (a test may give a copy with shorter ``for``s).
    rules: tuple[Path, ...] = (ALERT_RULES,)
    # Alertmanager's configuration (None: deploy/alertmanager/alertmanager.yml as it is).
    alertmanager: dict[str, Any] | None = None

    @property
    def prometheus_url(self) -> str:
        """Prometheus' web page and API."""
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager's web page and API."""
        return f"http://{self.host}:{self.alertmanager_port}"

    @property
    def console_url(self) -> str:
        """The xbus overview among Prometheus' console templates."""
        return f"{self.prometheus_url}/consoles/{CONSOLE}"

    def own_targets(self) -> list[ScrapeTarget]:
        """Prometheus, Alertmanager and the node exporter, as scrape targets."""
        return [
            ScrapeTarget("prometheus", f"{self.host}:{self.prometheus_port}"),
            ScrapeTarget("alertmanager", f"{self.host}:{self.alertmanager_port}"),
            ScrapeTarget("node", f"{self.host}:{self.node_exporter_port}"),
        ]


class LocalMonitoring:
    """Starts and stops the node exporter, Alertmanager and Prometheus."""

    def __init__(self, config: MonitoringConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self._etc = config.data_dir.resolve() / "etc"

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        slug = name.replace(" ", "-")
        return ManagedProcess(
            name,
            argv,
            log_file=self.config.log_dir.resolve() / f"{slug}.log",
            pid_file=self.config.run_dir.resolve() / f"{slug}.pid",
        )

    def set_targets(self, targets: Iterable[ScrapeTarget]) -> None:
        """What Prometheus scrapes, besides the monitoring's own: it rereads the files within
        a few seconds, without a restart."""
        write_targets(self._etc / "targets", [*self.config.own_targets(), *targets], target_jobs())

    def start(self, targets: Iterable[ScrapeTarget]) -> None:
        """Start the node exporter, Alertmanager, then Prometheus scraping ``targets`` and
        the three of them; wait until each answers. If one fails, the others stop."""
        c = self.config
        if not (PROMETHEUS_DIR / "prometheus.yml").is_file():
            raise LauncherError(
                f"no Prometheus configuration in {PROMETHEUS_DIR}: the local stack's monitoring "
                "runs from a checkout of the xbus repository (make run), which holds "
                "deploy/prometheus and deploy/alertmanager"
            )
        for port, what, setting in (
            (c.prometheus_port, "Prometheus", "XBUS_STACK_PROMETHEUS_PORT"),
            (c.alertmanager_port, "Alertmanager", "XBUS_STACK_ALERTMANAGER_PORT"),
            (c.node_exporter_port, "the node exporter", "XBUS_STACK_NODE_EXPORTER_PORT"),
        ):
            check_port_free(c.host, port, what, setting)
        data = c.data_dir.resolve()
        self._etc.mkdir(parents=True, exist_ok=True)
        self.set_targets(targets)
        (self._etc / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(self._etc, rules=c.rules, interval=c.interval))
        )
        alertmanager = c.alertmanager or yaml.safe_load(
            (ALERTMANAGER_DIR / "alertmanager.yml").read_text()
        )
        (self._etc / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager))
        try:
            self._start(
                "node exporter",
                [
                    program("node exporter"),
                    f"--web.listen-address={c.host}:{c.node_exporter_port}",
                    # What the disk and machine alerts and the dashboard read, nothing more.
                    "--collector.disable-defaults",
                    *(f"--collector.{n}" for n in ("filesystem", "cpu", "meminfo", "loadavg")),
                ],
                f"http://{c.host}:{c.node_exporter_port}/metrics",
            )
            self._start(
                "alertmanager",
                [
                    program("alertmanager"),
                    f"--config.file={self._etc / 'alertmanager.yml'}",
                    f"--storage.path={data / 'alertmanager'}",
                    f"--web.listen-address={c.host}:{c.alertmanager_port}",
                    # One Alertmanager: no gossip port to open.
                    "--cluster.listen-address=",
                ],
                f"{c.alertmanager_url}/-/ready",
            )
            self._start(
                "prometheus",
                [
                    program("prometheus"),
                    f"--config.file={self._etc / 'prometheus.yml'}",
                    f"--storage.tsdb.path={data / 'prometheus'}",
                    "--storage.tsdb.retention.time=7d",
                    f"--web.listen-address={c.host}:{c.prometheus_port}",
                    f"--web.console.templates={PROMETHEUS_DIR / 'consoles'}",
                    f"--web.console.libraries={PROMETHEUS_DIR / 'console_libraries'}",
                ],
                f"{c.prometheus_url}/-/ready",
            )
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, argv: list[str], ready_url: str) -> None:
        process = self._process(name, argv)
        self.processes.append(process)
        process.start()
        process.wait_until(
            lambda: _answers(ready_url), self.config.start_timeout, f"answering on {ready_url}"
        )

    def stop(self) -> None:
        """Stop Prometheus, Alertmanager and the node exporter (last started first)."""
        for process in reversed(self.processes):
            process.stop(timeout=20)
        self.processes.clear()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
