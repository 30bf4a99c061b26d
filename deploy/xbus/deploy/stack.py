"""The local stack: broker, registry and PostgreSQL (and, for change data capture, a Kafka
Connect worker), and for ``make run`` the engine, a connector and the demo department, each a
child process stopped in reverse order."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.errors import XbusError
from xbus.core.secret_files import password_file, write_private
from xbus.core.settings import BusSettings, home_dir
from xbus.core.signatures import ensure_keypair
from xbus.deploy.connect import ConnectConfig, LocalConnect
from xbus.deploy.errors import LauncherError
from xbus.deploy.kafka import ADMIN_USER, MECHANISM, REGISTRY_USER, KafkaCluster, KafkaConfig
from xbus.deploy.monitoring import LocalMonitoring, MonitoringConfig, ScrapeTarget
from xbus.deploy.postgres import (
    LocalPostgres,
    PostgresConfig,
    cluster_folder_outside,
    server_can_reach,
)
from xbus.deploy.process import ManagedProcess, free_port
from xbus.deploy.provisioning.access import CONNECT_USER, connect_principal
from xbus.deploy.provisioning.cluster import Provisioner
from xbus.deploy.registry import (
    OFFICE_USER,
    LocalRegistry,
    RegistryConfig,
    allow_storage,
)


class StackSettings(BaseSettings):
    """Ports, folders and limits of the local stack (environment prefix ``XBUS_STACK_``)."""

    model_config = SettingsConfigDict(env_prefix="XBUS_STACK_", extra="ignore")

    home: Path = Field(default_factory=home_dir)
    cache_dir: Path | None = None
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    controller_port: int = 9093
    registry_port: int = 8081
    registry_management_port: int = 8091
    # Kafka Connect's REST API (change data capture; started with ``cdc``).
    connect_port: int = 8083
    # Not 5432, where a system PostgreSQL usually listens.
    postgres_port: int = 5433
    # The broker's own metrics (JMX exporter), Prometheus, Alertmanager, the node exporter.
    broker_metrics_port: int = 9404
    prometheus_port: int = 9090
    alertmanager_port: int = 9095
    node_exporter_port: int = 9100
    kafka_heap: str = "768m"
    connect_heap: str = "384m"
    start_timeout: float = 120.0
    # SASL/SCRAM, ACLs and registry credentials; off only to compare or debug.
    secured: bool = True
    # TLS on the broker's client listener (SASL_SSL), with a private CA made once.
    tls: bool = False
    # Kafka nodes (broker and controller each): 1, or 3 for a replicated cluster (replication
    # factor 3, min.insync.replicas 2). Node n > 1 listens on the ports of node 1 plus
    # (n - 1) × 10000, unless ``node_ports`` gives its (client, controller, metrics) ports.
    brokers: int = Field(default=1, ge=1, le=9)
    # Also a Kafka Connect worker with Debezium's PostgreSQL connector, started after
    # PostgreSQL (``xbus stack up|exec --cdc``, or XBUS_STACK_CDC=1).
    cdc: bool = False
    node_ports: dict[int, tuple[int, int, int]] = {}

    @property
    def cache(self) -> Path:
        """Where fetched jars are kept (shared by every data dir)."""
        return self.cache_dir or self.home / "cache"


# The stack's folders that only their owner may enter (see ``LocalStack.close_folders``).
_PRIVATE_FOLDERS = ("kafka", "registry", "connect", "logs", "out", "monitoring")

# Settings of the supervisor that must not reach a component started under its own user.
_NOT_INHERITED = frozenset(
    {"XBUS_SASL_PASSWORD", "XBUS_SCHEMA_REGISTRY_PASSWORD", "XBUS_GRANT_SIGNING_KEY_FILE"}
)


@dataclass
class LocalStack:
    """A Kafka broker, a schema registry and PostgreSQL on loopback (and a Kafka Connect
    worker with ``cdc``), plus any components started on them."""

    settings: StackSettings
    data_dir: Path
    kafka: KafkaCluster = field(init=False)
    registry: LocalRegistry = field(init=False)
    postgres: LocalPostgres = field(init=False)
    connect: LocalConnect = field(init=False)
    monitoring: LocalMonitoring = field(init=False)
    components: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        run_dir = self.data_dir / "run"
        ports = self.node_ports()
        members = tuple((n, port, controller) for n, (port, controller, _) in ports.items())
        self.kafka = KafkaCluster(
            [
                KafkaConfig(
                    host=s.host,
                    port=port,
                    controller_port=controller_port,
                    data_dir=self._node_dir(n),
                    cache_dir=s.cache,
                    run_dir=run_dir,
                    heap=s.kafka_heap,
                    start_timeout=s.start_timeout,
                    secured=s.secured,
                    secrets_dir=self.secrets_dir,
                    tls=s.tls,
                    metrics_port=metrics_port,
                    node_id=n,
                    nodes=members,
                    cluster_id_file=self.data_dir / "kafka" / "cluster.id",
                )
                for n, (port, controller_port, metrics_port) in ports.items()
            ]
        )
        self.registry = LocalRegistry(
            RegistryConfig(
                bootstrap_servers=self.kafka.config.bootstrap_servers,
                kafka_login=self.kafka.config.client_config(REGISTRY_USER),
                secured=s.secured,
                secrets_dir=self.secrets_dir,
                host=s.host,
                port=s.registry_port,
                management_port=s.registry_management_port,
                cache_dir=s.cache,
                run_dir=run_dir,
                log_dir=self.data_dir / "registry",
                start_timeout=s.start_timeout,
            )
        )
        # PostgreSQL's cluster lives with the stack's data, unless its system user cannot pass
        # the folders above it (a checkout in /root or in a 0700 folder): then in a folder of
        # its own outside (the log stays here).
        own = self.data_dir / "postgres"
        cluster = own if server_can_reach(self.data_dir) else cluster_folder_outside(self.data_dir)
        self.postgres = LocalPostgres(
            PostgresConfig(
                host=s.host,
                port=s.postgres_port,
                data_dir=cluster / "data",
                run_dir=run_dir,
                socket_dir=None if cluster == own else cluster / "run",
                log_dir=self.data_dir / "postgres",
                secrets_dir=self.secrets_dir,
                start_timeout=s.start_timeout,
            )
        )
        self.connect = LocalConnect(
            ConnectConfig(
                bootstrap_servers=self.kafka.config.bootstrap_servers,
                kafka_login=self.kafka.config.client_config(CONNECT_USER),
                secured=s.secured,
                secrets_dir=self.secrets_dir,
                host=s.host,
                port=s.connect_port,
                cache_dir=s.cache,
                run_dir=run_dir,
                log_dir=self.data_dir / "connect",
                heap=s.connect_heap,
                start_timeout=s.start_timeout,
            )
        )
        self.monitoring = LocalMonitoring(
            MonitoringConfig(
                host=s.host,
                prometheus_port=s.prometheus_port,
                alertmanager_port=s.alertmanager_port,
                node_exporter_port=s.node_exporter_port,
                data_dir=self.data_dir / "monitoring",
                run_dir=run_dir,
                log_dir=self.data_dir / "logs",
                start_timeout=s.start_timeout,
            )
        )

    def node_ports(self) -> dict[int, tuple[int, int, int]]:
        """Each Kafka node's (client, controller, metrics) ports, by node id."""
        s = self.settings
        first = (s.kafka_port, s.controller_port, s.broker_metrics_port)
        return {
            n: s.node_ports.get(n) or tuple(p + (n - 1) * 10_000 for p in first)  # type: ignore[misc]
            for n in range(1, s.brokers + 1)
        }

    def _node_dir(self, node_id: int) -> Path:
        """Where node ``node_id`` keeps its data: ``kafka`` for a stack of one broker,
        ``kafka/node-<n>`` in a cluster."""
        return (
            self.data_dir / "kafka"
            if self.settings.brokers == 1
            else (self.data_dir / "kafka" / f"node-{node_id}")
        )

    def _check_broker_count(self) -> None:
        """A data dir holds the Kafka data of one shape: one broker or a cluster."""
        kafka = self.data_dir / "kafka"
        single = (kafka / "log").exists()
        cluster = any(kafka.glob("node-*"))
        if self.settings.brokers > 1 and single:
            raise LauncherError(
                f"{kafka} holds the data of a stack with one broker, not a cluster of "
                f"{self.settings.brokers}: start it with one broker, or remove {self.data_dir} "
                "(its data is lost) or use another XBUS_HOME for the cluster"
            )
        if self.settings.brokers == 1 and cluster:
            raise LauncherError(
                f"{kafka} holds the data of a cluster of several brokers: start it with "
                "--brokers as before, or remove "
                f"{self.data_dir} (its data is lost) or use another XBUS_HOME"
            )

    @classmethod
    def attach(cls, data_dir: Path) -> LocalStack:
        """The stack running from ``data_dir`` (as its ``start`` recorded it), to act on its
        parts from another process (``xbus stack broker``)."""
        recorded = data_dir / "stack.json"
        if not recorded.exists():
            raise LauncherError(
                f"no local stack was started from {data_dir} (it has no stack.json): start one "
                "with make run (xbus stack up) or xbus stack exec"
            )
        return cls(StackSettings.model_validate_json(recorded.read_text()), data_dir)

    @classmethod
    def persistent(cls, settings: StackSettings | None = None) -> LocalStack:
        """The stack of ``make run``: fixed ports, data kept in ``<home>/data`` across runs."""
        settings = settings or StackSettings()
        return cls(settings, settings.home / "data")

    @classmethod
    def ephemeral(cls, settings: StackSettings | None = None) -> LocalStack:
        """A throw-away stack on free ports with a fresh data dir (for tests); the jar cache
        is shared."""
        settings = settings or StackSettings()
        settings = settings.model_copy(
            update={
                "node_ports": {
                    n: (free_port(), free_port(), free_port())
                    for n in range(2, settings.brokers + 1)
                },
                "kafka_port": free_port(),
                "controller_port": free_port(),
                "registry_port": free_port(),
                "registry_management_port": free_port(),
                "connect_port": free_port(),
                "postgres_port": free_port(),
                "broker_metrics_port": free_port(),
                "prometheus_port": free_port(),
                "alertmanager_port": free_port(),
                "node_exporter_port": free_port(),
            }
        )
        data_dir = Path(tempfile.mkdtemp(prefix="xbus-stack-"))
        # mkdtemp makes it 0700; PostgreSQL may run as its own system user (when we are root)
        # and must pass through to its data dir inside. Passing, not listing.
        data_dir.chmod(0o711)
        return cls(settings, data_dir)

    @property
    def bootstrap_servers(self) -> str:
        """The broker's address."""
        return self.kafka.config.bootstrap_servers

    @property
    def registry_url(self) -> str:
        """The registry's Confluent-API URL."""
        return self.registry.config.url

    @property
    def postgres_dsn(self) -> str:
        """The URL of the bus's PostgreSQL database (no password: ``PGPASSFILE`` names the
        file holding it, in ``client_env``)."""
        return self.postgres.dsn

    @property
    def connect_url(self) -> str:
        """Kafka Connect's REST API (``client_env`` gives its credentials by file)."""
        return self.connect.config.url

    def client_env(self) -> dict[str, str]:
        """The environment that points xbus components and tests at this stack (Kafka
        Connect's, ``XBUS_CONNECT_*`` and ``XBUS_CDC_SECRETS_DIR``, when the stack runs one)."""
        signing, verifying = ensure_keypair(self.secrets_dir)
        return {
            **self.kafka.config.client_env(ADMIN_USER),
            **self.registry.config.client_env(OFFICE_USER),
            **self.postgres.config.client_env(),
            "XBUS_PSEUDONYM_KEY_FILE": str(self.pseudonym_key_file()),
            "XBUS_SECRETS_DIR": str(self.secrets_dir),
            "XBUS_GRANT_SIGNING_KEY_FILE": str(signing),
            "XBUS_GRANT_VERIFY_KEY_FILE": str(verifying),
            **(
                {"XBUS_BROKER_METRICS_URL": self.kafka.config.metrics_url}
                if self.kafka.config.metrics_url
                else {}
            ),
            **(
                self.connect.config.client_env()
                if self.settings.cdc or self.connect.running
                else {}
            ),
        }

    @property
    def secrets_dir(self) -> Path:
        """Where the stack keeps its generated secrets (0700; each file 0600)."""
        path = self.data_dir / "secrets"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def pseudonym_key_file(self) -> Path:
        """The local stack's secret for keyed pseudonyms, made once and kept with its data
        (so pseudonyms stay stable across runs)."""
        return password_file(self.secrets_dir / "pseudonym.key")

    def start(self) -> None:
        """Start the broker, the registry, PostgreSQL, then (with ``cdc``) Kafka Connect; if
        one fails, what was started is stopped, last first."""
        self.close_folders()
        self._check_broker_count()
        # What ``attach`` reads: how this stack was started (ports, folders; no secret).
        write_private(self.data_dir / "stack.json", self.settings.model_dump_json(indent=2))
        parts = [
            (self.kafka.start, self.kafka.stop),
            (self.start_registry, self.registry.stop),
            (self.postgres.start, self.postgres.stop),
        ]
        if self.settings.cdc:
            parts.append((self.start_connect, self.connect.stop))
        for index, (start, _) in enumerate(parts):
            try:
                start()
            except BaseException:
                for _, stop in reversed(parts[: index + 1]):
                    stop()
                raise

    def close_folders(self) -> None:
        """Keep other users of the machine out of the stack's data: the data dir may only be
        passed through (PostgreSQL's system user must reach its own folder inside), and the
        folders that hold records, deliveries and logs (Kafka's segments, the registry's,
        the components' logs, the delivered files, Prometheus' data) are their owner's
        alone, whatever modes their files have. A stack made before this was so is closed the
        same way."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o711)
        for name in _PRIVATE_FOLDERS:
            folder = self.data_dir / name
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)
        for log in (self.data_dir / "postgres").glob("*.log"):
            if log.stat().st_uid == os.geteuid():
                log.chmod(0o600)

    def start_registry(self) -> None:
        """Start the registry (on a secured broker, its Kafka user is first allowed its own
        topics and groups)."""
        if self.kafka.config.secured:
            allow_storage(self.kafka.config.client_config(), REGISTRY_USER)
        self.registry.start()

    def start_connect(self, *, outlive_parent: bool = False) -> None:
        """Start the Kafka Connect worker and wait until it answers. On a secured broker its
        Kafka user, ``service.connect``, is first given what it lacks, as ``xbus provision``
        would give it (its SCRAM credential, its ACLs; nothing else is changed): ``xbus stack
        exec`` provisions nothing. ``outlive_parent``: ``xbus stack connect start``."""
        if self.settings.secured:
            try:
                Provisioner(self.office_settings()).ensure(connect_principal())
            except XbusError as error:
                raise LauncherError(
                    f"could not give Kafka Connect its Kafka user {CONNECT_USER}: {error}"
                ) from error
        # Read now: a rotated password is the one the worker logs in with.
        self.connect.config.kafka_login = self.kafka.config.client_config(CONNECT_USER)
        self.connect.start(outlive_parent=outlive_parent)

    def office_settings(self) -> BusSettings:
        """The settings with which the office (Kafka's ``admin``) reaches this stack's broker,
        whatever this process's environment says."""
        k = self.kafka.config
        return BusSettings(
            bootstrap_servers=k.bootstrap_servers,
            security_protocol=k.security_protocol,
            sasl_mechanism=MECHANISM if k.secured else None,
            sasl_username=ADMIN_USER if k.secured else None,
            sasl_password=None,
            sasl_password_file=k.password_file(ADMIN_USER) if k.secured else None,
            ssl_ca_location=k.certificates.ca_certificate if k.tls else None,
            secrets_dir=self.secrets_dir,
        )

    def component_env(
        self, kafka_user: str | None = None, registry_user: str | None = None
    ) -> dict[str, str]:
        """The environment of a component that runs as Kafka user ``kafka_user`` (whose
        password ``xbus provision`` wrote) and registry user ``registry_user``; None for either
        keeps the office's. No component but the office gets the grant-signing key, nor the
        login of Kafka Connect's REST API (the office sets up connectors)."""
        env = self.client_env()
        del env["XBUS_GRANT_SIGNING_KEY_FILE"]
        for office_only in ("XBUS_CONNECT_USERNAME", "XBUS_CONNECT_PASSWORD_FILE"):
            env.pop(office_only, None)
        if self.settings.secured and kafka_user is not None:
            env["XBUS_SASL_USERNAME"] = kafka_user
            env["XBUS_SASL_PASSWORD_FILE"] = str(
                self.secrets_dir / "kafka" / f"{kafka_user}.password"
            )
        if self.settings.secured and registry_user is not None:
            env |= self.registry.config.client_env(registry_user)
        return env

    def start_component(
        self,
        name: str,
        args: list[str],
        log_name: str,
        *,
        kafka_user: str | None = None,
        registry_user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """Start ``xbus <args>`` against this stack as ``kafka_user`` and ``registry_user``
        (``component_env``), with ``env`` on top; its output in ``<data>/logs/<log_name>``.
        This process's own secrets (a password given as a value, the signing key) do not
        reach it."""
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "xbus.cli", *args],
            log_file=self.data_dir / "logs" / log_name,
            pid_file=self.data_dir / "run" / f"{log_name}.pid",
            env={
                **inherited,
                **self.component_env(kafka_user, registry_user),
                **(env or {}),
                "PYTHONUNBUFFERED": "1",
            },
        )
        process.start()
        self.components.append(process)
        return process

    def scrape_targets(self) -> list[ScrapeTarget]:
        """The stack's own metrics endpoints: each broker's (its JMX exporter)."""
        return [
            ScrapeTarget(
                "kafka",
                f"{node.config.host}:{node.config.metrics_port}",
                {"component": "kafka", "node": str(node_id)},
            )
            for node_id, node in self.kafka.nodes.items()
            if node.config.metrics_port is not None
        ]

    def start_monitoring(self, targets: list[ScrapeTarget]) -> None:
        """Start the node exporter, Alertmanager and Prometheus, scraping the stack and
        ``targets`` (the components' endpoints)."""
        self.monitoring.start([*self.scrape_targets(), *targets])

    def stop(self) -> None:
        """Stop Prometheus and what goes with it, the components (last started first), Kafka
        Connect (whichever command started it), PostgreSQL, the registry, then the broker."""
        self.monitoring.stop()
        for process in reversed(self.components):
            process.stop(timeout=20)
        self.components.clear()
        self.connect.stop()
        self.postgres.stop()
        self.registry.stop()
        self.kafka.stop()

    def remove_data(self) -> None:
        """Delete the data dir (for ephemeral stacks)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
