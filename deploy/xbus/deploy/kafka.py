"""A single-node Apache Kafka 4 broker in KRaft mode (combined broker and controller) on
loopback, run from the official jars, secured by default.

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
import logging
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

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to."""
        return f"{self.host}:{self.port}"

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


def server_properties(config: KafkaConfig) -> str:
    """The broker's ``server.properties`` for ``config`` (with passwords when secured: the file
    is written 0600)."""
    h = config.host
    client = config.security_protocol
    # The controller listener is the broker's own; it never gets TLS (see the module's doc).
    controller = "SASL_PLAINTEXT" if config.secured else "PLAINTEXT"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{config.controller_port}",
            f"listeners={client}://{h}:{config.port},CONTROLLER://{h}:{config.controller_port}",
            f"advertised.listeners={client}://{h}:{config.port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map=CONTROLLER:{controller},{client}:{client}",
            *(_security_properties(config) if config.secured else []),
            *(_tls_properties(config.certificates) if config.tls else []),
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
        self._properties = config.secrets_dir.resolve() / "kafka" / "server.properties"
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
            f"--cluster-id={cluster_id()}",
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

    def start(self) -> None:
        """Start the broker and wait until it answers metadata requests."""
        c = self.config
        jars = resolve_artifacts(KAFKA_POM, c.cache_dir.resolve(), "kafka")
        argv = self._java(jars, "kafka.Kafka", str(self._properties), heap=c.heap)
        argv[1:1] = self._metrics_agent()
        self.process = ManagedProcess(
            "kafka", argv, log_file=self._log_dir / "stdout.log", pid_file=self._pid_file
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
        self.process.start()
        probe: dict[str, Any] = {**c.client_config(), "logger": _quiet}
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
