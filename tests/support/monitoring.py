"""The launcher's Prometheus, Alertmanager and node exporter for a test: on free ports, in the
test's own folders, scraping and evaluating every second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xbus.deploy.monitoring import MonitoringConfig
from xbus.deploy.process import free_port


def monitoring_for(folder: Path, **settings: Any) -> MonitoringConfig:
    """A ``MonitoringConfig`` on free ports under ``folder``, with ``settings`` on top."""
    return MonitoringConfig(
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        node_exporter_port=free_port(),
        data_dir=folder / "monitoring",
        run_dir=folder / "run",
        log_dir=folder / "logs",
        interval="1s",
        **settings,
    )
