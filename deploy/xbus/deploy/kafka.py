"""A single-node Apache Kafka 4 broker in KRaft mode (combined broker and controller) on
loopback, run from the official jars."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from xbus.deploy.errors import LauncherError
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.process import ManagedProcess, check_port_free

# Shipped inside the package (``resources/kafka``); Maven and Java need real file paths.
_RESOURCES = Path(str(files("xbus.deploy").joinpath("resources")))
KAFKA_POM = _RESOURCES / "kafka" / "pom.xml"
KAFKA_LOG4J = _RESOURCES / "kafka" / "log4j2.properties"


@dataclass
class KafkaConfig:
    """Where the broker listens and keeps its data."""

    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    data_dir: Path = Path(".xbus/data/kafka")
    cache_dir: Path = Path(".xbus/cache")
    run_dir: Path = Path(".xbus/run")
    heap: str = "768m"
    partitions: int = 3
    start_timeout: float = 90.0

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to."""
        return f"{self.host}:{self.port}"


def server_properties(config: KafkaConfig) -> str:
    """The broker's ``server.properties`` for ``config``."""
    h = config.host
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{config.controller_port}",
            f"listeners=PLAINTEXT://{h}:{config.port},CONTROLLER://{h}:{config.controller_port}",
            f"advertised.listeners=PLAINTEXT://{h}:{config.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={config.data_dir.resolve() / 'log'}",
            f"num.partitions={config.partitions}",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]
    )


class LocalKafka:
    """Fetches, formats, starts and stops the local broker."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        data = config.data_dir.resolve()
        self._properties = data / "server.properties"
        self.process: ManagedProcess | None = None
        self._log_dir = data / "logs"
        self._pid_file = config.run_dir.resolve() / f"kafka-{config.port}.pid"

    def _java(self, jars: Path, main: str, *args: str, heap: str | None = None) -> list[str]:
        argv = ["java"]
        if heap:
            argv += [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        argv += [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            f"-Dkafka.logs.dir={self._log_dir}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]
        return argv

    def _format(self, jars: Path) -> None:
        """Format the storage once; a data dir from an earlier run is reused as it is."""
        log_dir = self.config.data_dir.resolve() / "log"
        if (log_dir / "meta.properties").exists():
            return
        if log_dir.exists() and any(log_dir.iterdir()):
            raise LauncherError(
                f"{log_dir} holds files but no meta.properties: it is not a Kafka data dir, or "
                "formatting it was interrupted. Remove it (its data is lost) or choose another "
                "data dir."
            )
        result = subprocess.run(
            self._java(
                jars,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                f"--cluster-id={cluster_id()}",
                f"--config={self._properties}",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise LauncherError(f"formatting {log_dir} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start the broker and wait until it answers metadata requests."""
        c = self.config
        jars = resolve_artifacts(KAFKA_POM, c.cache_dir.resolve(), "kafka")
        self.process = ManagedProcess(
            "kafka",
            self._java(jars, "kafka.Kafka", str(self._properties), heap=c.heap),
            log_file=self._log_dir / "stdout.log",
            pid_file=self._pid_file,
        )
        self.process.stop_leftover()
        check_port_free(c.host, c.port, "the Kafka broker", "XBUS_STACK_KAFKA_PORT")
        check_port_free(
            c.host, c.controller_port, "the KRaft controller", "XBUS_STACK_CONTROLLER_PORT"
        )
        c.data_dir.mkdir(parents=True, exist_ok=True)
        self._properties.write_text(server_properties(c))
        self._format(jars)
        self.process.start()
        probe: dict[str, Any] = {"bootstrap.servers": c.bootstrap_servers, "logger": _quiet}
        admin = AdminClient(probe)
        self.process.wait_until(
            lambda: _answers(admin), c.start_timeout, f"answering on {c.bootstrap_servers}"
        )

    def stop(self) -> None:
        """Stop the broker cleanly (a controlled shutdown takes a few seconds)."""
        if self.process is not None:
            self.process.stop(timeout=60)


# librdkafka reports every refused connection while the broker starts; nobody needs those.
_quiet = logging.getLogger("xbus.launcher.kafka-probe")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def cluster_id() -> str:
    """A random KRaft cluster id; like Kafka's own, never one that reads as an option."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def _answers(admin: AdminClient) -> bool:
    try:
        metadata = admin.list_topics(timeout=1.0)
    except Exception:
        return False
    return bool(metadata.brokers)
