"""Apache Kafka 4 in KRaft mode on loopback, run from the official jars, secured by default:
one node (combined broker and controller), or a cluster of several such nodes whose
controllers form the quorum (``KafkaCluster``), where any one node can be stopped, killed and
started again while the others run.

A cluster's topics are made with replication factor 3 (the node count, if smaller) and
``min.insync.replicas`` 2, Kafka's own internal topics too; one node keeps 1 and 1. Topics
created without a replication factor (xbus asks for the cluster's default) get these.

Secured: clients authenticate with SASL/SCRAM-SHA-512 on the client listener; the KRaft
``StandardAuthorizer`` refuses whatever no ACL allows (``allow.everyone.if.no.acl.found=false``).
The broker reaches its own controller with SASL/PLAIN as user ``controller`` (a PLAINTEXT
controller listener would make it ``ANONYMOUS``, refused registration). ``admin`` and
``controller`` are the super users; ``admin`` and ``registry`` (the schema registry's own
storage) get SCRAM credentials when the storage is formatted. Every password is generated into
``<secrets>/kafka/<user>.password`` (0600) and passed to Java in files, never on a command
line.

With ``tls`` on, the client listener (and the broker's own connections to it) speaks TLS:
SASL_SSL, with a certificate made by a private CA kept in ``<secrets>/tls/``
(``xbus.deploy.certificates``), read by Kafka as a PEM keystore. The controller listener stays
on SASL_PLAINTEXT: it listens on the broker's host for the broker itself only."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from xbus.core.secret_files import password_file, read_secret, write_private
from xbus.deploy.certificates import BrokerCertificates, ensure_broker_certificates
from xbus.deploy.errors import LauncherError
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.process import ManagedProcess, check_port_free

# Shipped inside the package (``resources/kafka``); Maven and Java need real file paths.
_RESOURCES = Path(str(files("xbus.deploy").joinpath("resources")))
KAFKA_POM = _RESOURCES / "kafka" / "pom.xml"
KAFKA_LOG4J = _RESOURCES / "kafka" / "log4j2.properties"
JMX_EXPORTER_POM = _RESOURCES / "jmx_exporter" / "pom.xml"
JMX_EXPORTER_RULES = _RESOURCES / "kafka" / "jmx-exporter.yml"

ADMIN_USER = "admin"
CONTROLLER_USER = "controller"
REGISTRY_USER = "registry"
MECHANISM = "SCRAM-SHA-512"
_SCRAM_USERS = (ADMIN_USER, REGISTRY_USER)


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
    # SASL/SCRAM and ACLs (the default); False only for a throw-away broker in launcher tests.
    secured: bool = True
    secrets_dir: Path = Path(".xbus/secrets")
    # TLS on the client listener (SASL_SSL), with a certificate of a private CA made once.
    tls: bool = False
    # Where the broker's own metrics are served for Prometheus (the JMX exporter Java agent,
    # on ``host``); None: not served.
    metrics_port: int | None = None
    # This node's id, and every node of its cluster (itself included) as (id, client port,
    # controller port); empty: a cluster of this one node.
    node_id: int = 1
    nodes: tuple[tuple[int, int, int], ...] = ()
    # Where the cluster's id is kept, made at the first format and shared by its nodes (not a
    # secret: it is in every node's meta.properties); None: ``<data_dir>/cluster.id``.
    cluster_id_file: Path | None = None

    @property
    def members(self) -> tuple[tuple[int, int, int], ...]:
        """Every node of the cluster as (id, client port, controller port)."""
        return self.nodes or ((self.node_id, self.port, self.controller_port),)

    @property
    def replicas(self) -> int:
        """The replication factor of the cluster's topics: 3, or every node if fewer."""
        return min(3, len(self.members))

    @property
    def min_insync_replicas(self) -> int:
        """How many replicas must have a write before it is acknowledged (acks=all)."""
        return 2 if self.replicas >= 3 else 1

    @property
    def address(self) -> str:
        """This node's own client address."""
        return f"{self.host}:{self.port}"

    @property
    def bootstrap_servers(self) -> str:
        """The addresses clients connect to: every node's."""
        return ",".join(f"{self.host}:{port}" for _, port, _ in self.members)

    @property
    def metrics_url(self) -> str | None:
        """The broker's Prometheus metrics page, if it serves one."""
        if self.metrics_port is None:
            return None
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def security_protocol(self) -> str:
        """The client listener's protocol: SASL_SSL, SASL_PLAINTEXT, SSL or PLAINTEXT."""
        return ("SASL_" if self.secured else "") + ("SSL" if self.tls else "PLAINTEXT")

    @property
    def certificates(self) -> BrokerCertificates:
        """Where the CA and the broker's certificate are kept (made by ``LocalKafka.start``)."""
        return BrokerCertificates(self.secrets_dir.resolve() / "tls")

    def password_file(self, user: str) -> Path:
        """The file holding ``user``'s password (made on first use)."""
        return password_file(self.secrets_dir.resolve() / "kafka" / f"{user}.password")

    def client_config(self, user: str = ADMIN_USER) -> dict[str, Any]:
        """The librdkafka settings with which ``user`` reaches this broker."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.secured or self.tls:
            config["security.protocol"] = self.security_protocol
        if self.tls:
            config["ssl.ca.location"] = str(self.certificates.ca_certificate)
        if self.secured:
            config |= {
                "sasl.mechanism": MECHANISM,
                "sasl.username": user,
                "sasl.password": read_secret(self.password_file(user)),
            }
        return config

    def client_env(self, user: str = ADMIN_USER) -> dict[str, str]:
        """The ``XBUS_`` settings with which an xbus component reaches this broker as ``user``
        (its password by file)."""
        env = {"XBUS_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        if self.secured or self.tls:
            env["XBUS_SECURITY_PROTOCOL"] = self.security_protocol
        if self.tls:
            env["XBUS_SSL_CA_LOCATION"] = str(self.certificates.ca_certificate)
        if self.secured:
            env |= {
                "XBUS_SASL_MECHANISM": MECHANISM,
                "XBUS_SASL_USERNAME": user,
                "XBUS_SASL_PASSWORD_FILE": str(self.password_file(user)),
            }
        return env


def java_login(login: dict[str, Any]) -> dict[str, str]:
    """librdkafka's SASL and TLS settings (``KafkaConfig.client_config``) as the Java
    client's: what a Java service of the stack (the registry's storage, Kafka Connect) logs
    in with. Empty for an unsecured broker without TLS."""
    java: dict[str, str] = {}
    if "sasl.username" in login:
        module = "org.apache.kafka.common.security.scram.ScramLoginModule"
        java |= {
            "security.protocol": str(login["security.protocol"]),
            "sasl.mechanism": str(login["sasl.mechanism"]),
            "sasl.jaas.config": f'{module} required username="{login["sasl.username"]}" '
            f'password="{login["sasl.password"]}";',
        }
    if "ssl.ca.location" in login:
        # The CA as a PEM truststore; Java checks the broker's host name by default.
        java |= {
            "security.protocol": str(login["security.protocol"]),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(login["ssl.ca.location"]),
        }
    return java


def server_properties(config: KafkaConfig) -> str:
    """The node's ``server.properties`` for ``config`` (with passwords when secured: the file
    is written 0600)."""
    h = config.host
    client = config.security_protocol
    # The controller listener is the broker's own; it never gets TLS (see the module's doc).
    controller = "SASL_PLAINTEXT" if config.secured else "PLAINTEXT"
    voters = ",".join(f"{n}@{h}:{cport}" for n, _, cport in config.members)
    rf, isr = config.replicas, config.min_insync_replicas
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={config.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners={client}://{h}:{config.port},CONTROLLER://{h}:{config.controller_port}",
            f"advertised.listeners={client}://{config.address}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map=CONTROLLER:{controller},{client}:{client}",
            *(_security_properties(config) if config.secured else []),
            *(_tls_properties(config.certificates) if config.tls else []),
            f"log.dirs={config.data_dir.resolve() / 'log'}",
            f"num.partitions={config.partitions}",
            "auto.create.topics.enable=true",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            # A node that comes back catches up and takes its partitions' leadership back.
            "auto.leader.rebalance.enable=true",
            "leader.imbalance.check.interval.seconds=10",
            "",
        ]
    )


def _security_properties(config: KafkaConfig) -> list[str]:
    admin = read_secret(config.password_file(ADMIN_USER))
    controller = read_secret(config.password_file(CONTROLLER_USER))
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    return [
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.{config.security_protocol.lower()}.{MECHANISM.lower()}.sasl.jaas.config="
        f"{scram} "
        f'username="{ADMIN_USER}" password="{admin}";',
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain} "
        f'username="{CONTROLLER_USER}" password="{controller}" '
        f'user_{CONTROLLER_USER}="{controller}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN_USER};User:{CONTROLLER_USER}",
    ]


def _tls_properties(certificates: BrokerCertificates) -> list[str]:
    """The client listener's TLS: its key and certificate chain from one PEM file (unencrypted
    PKCS#8, 0600: Kafka 4.1 on Java 17 cannot read a PBES2-encrypted key), and the CA it
    trusts when the broker connects to itself (checking the host name, as clients do)."""
    return [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={certificates.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={certificates.ca_certificate}",
        "ssl.endpoint.identification.algorithm=https",
        "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
    ]


def _argfile_line(argument: str) -> str:
    """One argument as a ``java @argfile`` line: quoted, backslashes and quotes escaped."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LocalKafka:
    """Fetches, formats, starts and stops the local broker."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        data = config.data_dir.resolve()
        # It holds the broker's own passwords: kept with the secrets, not the data.
        name = "server.properties" if config.node_id == 1 else f"server-{config.node_id}.properties"
        self._properties = config.secrets_dir.resolve() / "kafka" / name
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
        c = self.config
        log_dir = c.data_dir.resolve() / "log"
        if (log_dir / "meta.properties").exists():
            return
        if log_dir.exists() and any(log_dir.iterdir()):
            raise LauncherError(
                f"{log_dir} holds files but no meta.properties: it is not a Kafka data dir, or "
                "formatting it was interrupted. Remove it (its data is lost) or choose another "
                "data dir."
            )
        argv = self._java(
            jars,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            f"--cluster-id={self._cluster_id()}",
            f"--config={self._properties}",
        )
        if c.secured:
            for user in _SCRAM_USERS:
                password = read_secret(c.password_file(user))
                argv += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        # The SCRAM passwords go to Java in an argument file (0600, removed at once), not on
        # the command line.
        argfile = write_private(
            c.secrets_dir.resolve() / "kafka" / "format.args",
            "\n".join(map(_argfile_line, argv[1:])),
        )
        try:
            result = subprocess.run([argv[0], f"@{argfile}"], capture_output=True, text=True)
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise LauncherError(f"formatting {log_dir} failed:\n{result.stdout}{result.stderr}")

    def _cluster_id(self) -> str:
        """The cluster's id, made once and shared by its nodes (each is formatted with it)."""
        c = self.config
        path = (c.cluster_id_file or c.data_dir / "cluster.id").resolve()
        if not path.exists():
            write_private(path, cluster_id())
        return path.read_text().strip()

    def _check_users_kept(self) -> None:
        """A secured broker on a data dir formatted without its users (by an unsecured stack,
        or whose password files were removed) would let nobody in: say so before starting."""
        c = self.config
        admin_password = c.secrets_dir.resolve() / "kafka" / f"{ADMIN_USER}.password"
        formatted = (c.data_dir.resolve() / "log" / "meta.properties").exists()
        if c.secured and formatted and not admin_password.exists():
            raise LauncherError(
                f"{c.data_dir.resolve() / 'log'} was formatted without xbus's Kafka users (by an "
                f"unsecured stack, or {admin_password} was removed): nobody could log in to it. "
                f"Remove {c.data_dir.resolve().parent} (its data is lost) to start afresh."
            )

    def _metrics_agent(self) -> list[str]:
        """The JVM option that loads the JMX exporter, serving the broker's metrics on
        loopback (none if the config serves none)."""
        c = self.config
        if c.metrics_port is None:
            return []
        folder = resolve_artifacts(
            JMX_EXPORTER_POM, c.cache_dir.resolve(), "jmx-exporter", exclude_transitive=True
        )
        (agent,) = folder.glob("jmx_prometheus_javaagent-*.jar")
        return [f"-javaagent:{agent}={c.host}:{c.metrics_port}:{JMX_EXPORTER_RULES}"]

    def start(self, *, outlive_parent: bool = False) -> None:
        """Start the node and wait until it answers metadata requests as a broker."""
        self.launch(outlive_parent=outlive_parent)
        self.wait_ready()

    def launch(self, *, outlive_parent: bool = False) -> None:
        """Start the node's process (formatting its storage the first time), not waiting for
        it: a cluster's nodes answer only once a quorum of them runs. ``outlive_parent``: see
        ``ManagedProcess.start``."""
        c = self.config
        jars = resolve_artifacts(KAFKA_POM, c.cache_dir.resolve(), "kafka")
        argv = self._java(jars, "kafka.Kafka", str(self._properties), heap=c.heap)
        argv[1:1] = self._metrics_agent()
        name = "kafka" if len(c.members) == 1 else f"kafka node {c.node_id}"
        self.process = ManagedProcess(
            name, argv, log_file=self._log_dir / "stdout.log", pid_file=self._pid_file
        )
        self.process.stop_leftover()
        check_port_free(c.host, c.port, "the Kafka broker", "XBUS_STACK_KAFKA_PORT")
        check_port_free(
            c.host, c.controller_port, "the KRaft controller", "XBUS_STACK_CONTROLLER_PORT"
        )
        if c.metrics_port is not None:
            check_port_free(
                c.host, c.metrics_port, "the broker's metrics", "XBUS_STACK_BROKER_METRICS_PORT"
            )
        self._check_users_kept()
        c.data_dir.mkdir(parents=True, exist_ok=True)
        if c.tls:
            ensure_broker_certificates(c.certificates.folder, c.host)
        write_private(self._properties, server_properties(c))
        self._format(jars)
        self.process.start(outlive_parent=outlive_parent)

    def wait_ready(self) -> None:
        """Wait until this node answers metadata requests on its own address and counts
        itself among the cluster's brokers; stop it and raise if it does not in time."""
        assert self.process is not None, "launch() first"
        c = self.config
        probe: dict[str, Any] = {
            **c.client_config(),
            "bootstrap.servers": c.address,
            "logger": _quiet,
        }
        admin = AdminClient(probe)
        self.process.wait_until(
            lambda: _answers(admin, c.node_id), c.start_timeout, f"answering on {c.address}"
        )

    def stop(self) -> None:
        """Stop the node cleanly (a controlled shutdown takes a few seconds); one started by
        another process (``xbus stack broker start``) is found by its pid file."""
        ours = self.process.process.pid if self.process and self.process.process else None
        recorded = self._by_pid_file()
        if recorded.recorded_pid() not in (None, ours):
            recorded.stop_leftover("started by another command")
        if self.process is not None:
            self.process.stop(timeout=60)

    @property
    def running(self) -> bool:
        """Whether the node's process runs, whichever command started it."""
        if self.process is not None and self.process.running:
            return True
        return self._by_pid_file().recorded_pid() is not None

    def signal_stop(self) -> None:
        """Ask the node to shut down, not waiting (``stop`` waits)."""
        if self.process is not None and self.process.running:
            self.process.signal()
        elif (pid := self._by_pid_file().recorded_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def kill(self) -> None:
        """Kill the node at once (SIGKILL): no controlled shutdown, nothing flushed."""
        if self.process is not None and self.process.running:
            self.process.kill()
        else:
            self._by_pid_file().kill()

    def _by_pid_file(self) -> ManagedProcess:
        return ManagedProcess(
            "kafka", [], log_file=self._log_dir / "stdout.log", pid_file=self._pid_file
        )


class KafkaCluster:
    """The nodes of one cluster, started together (a node answers once a quorum runs), each
    of which can be stopped, killed and started again while the others run."""

    def __init__(self, configs: list[KafkaConfig]) -> None:
        if not configs:
            raise LauncherError("a Kafka cluster needs at least one node")
        self.nodes = {c.node_id: LocalKafka(c) for c in configs}
        # Clients' settings: any node's config gives every node's address.
        self.config = configs[0]

    def start(self) -> None:
        """Start every node, then wait until each answers; if one fails, all are stopped."""
        try:
            for node in self.nodes.values():
                node.launch()
            for node in self.nodes.values():
                node.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node at once: stopped one by one, the last would wait for a quorum that
        has already gone."""
        for node in self.nodes.values():
            node.signal_stop()
        for node in self.nodes.values():
            node.stop()

    def node(self, node_id: int) -> LocalKafka:
        """Node ``node_id``; a clear error if the cluster has none by that id."""
        if node_id not in self.nodes:
            raise LauncherError(
                f"there is no Kafka node {node_id}: the cluster's nodes are "
                f"{', '.join(map(str, sorted(self.nodes)))}"
            )
        return self.nodes[node_id]

    def start_node(self, node_id: int, *, outlive_parent: bool = False) -> None:
        """Start node ``node_id`` again and wait until it is back among the brokers."""
        self.node(node_id).start(outlive_parent=outlive_parent)

    def stop_node(self, node_id: int) -> None:
        """Stop node ``node_id`` cleanly (its partitions' leadership moves first)."""
        self.node(node_id).stop()

    def kill_node(self, node_id: int) -> None:
        """Kill node ``node_id`` with SIGKILL."""
        self.node(node_id).kill()


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


def _answers(admin: AdminClient, node_id: int) -> bool:
    try:
        metadata = admin.list_topics(timeout=1.0)
    except Exception:
        return False
    return node_id in metadata.brokers
