"""Kafka Connect on loopback, for change data capture: one worker in distributed mode, run
from the official Kafka 4.1.1 jars, with Debezium's PostgreSQL connector (3.4.3.Final, its
plugin archive from Maven Central) on its plugin path.

The worker keeps its connectors' configurations, source offsets and status in the bus's own
Kafka, in ``_xbus.connect.configs``, ``_xbus.connect.offsets`` and ``_xbus.connect.status``
(made by the worker with the cluster's default replication factor), as group
``_xbus.connect``; its records are JSON without embedded schemas, decimals as numbers.

Secured (the default):

- its REST API (``http://127.0.0.1:<port>``, loopback only) wants HTTP basic credentials of
  user ``office`` (Kafka's ``BasicAuthSecurityRestExtension`` with a JAAS
  ``PropertyFileLoginModule``); the password is generated into
  ``<secrets>/connect/office.password``;
- its Kafka clients log in with SASL/SCRAM as ``service.connect``, allowed only its internal
  topics, its group and the ``cdc.*`` topics (``xbus.deploy.provisioning.access``);
- connector configurations carry no password: a value ``${dir:<secrets>/cdc:<file>}``
  (``ConnectConfig.secret_reference``) is replaced by the contents of that file when the
  worker starts the connector, and the worker reads no folder but ``<secrets>/cdc``. The file
  is read whole: write it without a trailing newline. The configuration Connect stores and
  shows keeps the reference, not the value.

Every secret reaches Java in 0600 files under ``<secrets>/connect/``, never on its command
line. Unsecured (launcher tests only), the REST API and the Kafka clients need no login.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from xbus.core.secret_files import password_file, read_secret, write_private
from xbus.core.topics import CONNECT_GROUP, CONNECT_PREFIX
from xbus.deploy.errors import LauncherError
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.kafka import java_login
from xbus.deploy.process import ManagedProcess, check_port_free

# Shipped inside the package (``resources/connect``); Maven and Java need real file paths.
CONNECT_DIR = Path(str(files("xbus.deploy").joinpath("resources", "connect")))
CONNECT_POM = CONNECT_DIR / "pom.xml"
DEBEZIUM_POM = CONNECT_DIR / "debezium-pom.xml"
CONNECT_LOG4J = CONNECT_DIR / "log4j2.properties"

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
# The one user of the REST API: the data-sharing office, which sets up the connectors.
REST_USER = "office"
CONFIGS_TOPIC = f"{CONNECT_PREFIX}configs"
OFFSETS_TOPIC = f"{CONNECT_PREFIX}offsets"
STATUS_TOPIC = f"{CONNECT_PREFIX}status"
# The config provider of connector configurations: ``${dir:<folder>:<file>}``.
CONFIG_PROVIDER = "dir"
DIRECTORY_PROVIDER = "org.apache.kafka.common.config.provider.DirectoryConfigProvider"
# Which config providers a Kafka client may load from its own configuration (Kafka's
# ``AbstractConfig``; unset, any): only the worker's, whose own configuration goes through it.
_AUTOMATIC_PROVIDERS = "org.apache.kafka.automatic.config.providers"
_BASIC_AUTH = "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
_LOGIN_MODULE = "org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule"
_JSON = "org.apache.kafka.connect.json.JsonConverter"


@dataclass
class ConnectConfig:
    """Where the worker listens, the Kafka cluster it runs on, and its folders."""

    bootstrap_servers: str
    # The librdkafka-style settings of the worker's Kafka user (security.protocol, sasl.*,
    # ssl.ca.location); empty for an unsecured broker.
    kafka_login: dict[str, Any] = field(default_factory=dict, repr=False)
    secured: bool = True
    secrets_dir: Path = Path(".xbus/secrets")
    host: str = "127.0.0.1"
    port: int = 8083
    cache_dir: Path = Path(".xbus/cache")
    run_dir: Path = Path(".xbus/run")
    log_dir: Path = Path(".xbus/data/connect")
    heap: str = "384m"
    start_timeout: float = 120.0

    @property
    def url(self) -> str:
        """The REST API's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def folder(self) -> Path:
        """Where the worker's own secrets are kept: its properties (with its Kafka password),
        the REST users file and its JAAS file, the office's password."""
        return self.secrets_dir.resolve() / "connect"

    def password_file(self) -> Path:
        """The file holding the REST API's ``office`` password (made on first use)."""
        return password_file(self.folder / f"{REST_USER}.password")

    def auth(self) -> tuple[str, str] | None:
        """HTTP basic credentials of the REST API; none when unsecured."""
        return (REST_USER, read_secret(self.password_file())) if self.secured else None

    @property
    def secrets_folder(self) -> Path:
        """The only folder whose files connector configurations may name
        (``secret_reference``), made 0700."""
        folder = self.secrets_dir.resolve() / "cdc"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def secret_reference(self, file_name: str) -> str:
        """What a connector configuration says instead of a secret: the worker puts the
        contents of ``<secrets_folder>/<file_name>`` there when it starts the connector."""
        if not file_name or "/" in file_name or file_name in (".", ".."):
            raise LauncherError(f"{file_name!r} is not a file name in {self.secrets_folder}")
        return f"${{{CONFIG_PROVIDER}:{self.secrets_folder}:{file_name}}}"

    def client_env(self) -> dict[str, str]:
        """The ``XBUS_`` settings with which xbus reaches the worker as the office (its
        password by file), and the folder of the connectors' secrets."""
        env = {"XBUS_CONNECT_URL": self.url, "XBUS_CDC_SECRETS_DIR": str(self.secrets_folder)}
        if self.secured:
            env |= {
                "XBUS_CONNECT_USERNAME": REST_USER,
                "XBUS_CONNECT_PASSWORD_FILE": str(self.password_file()),
            }
        return env

    @property
    def pid_file(self) -> Path:
        """The worker's pid file (how another command finds it)."""
        return self.run_dir.resolve() / f"connect-{self.port}.pid"


def _escape(value: str) -> str:
    """``value`` as a Java properties value: backslashes and line breaks escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unicode_escape(value: str) -> str:
    """``value`` with every character but letters, digits, ``-`` and ``_`` as ``\\uXXXX``:
    a password in a Java properties file, read back exactly whatever it holds."""
    escaped = []
    for char in value:
        if char.isascii() and (char.isalnum() or char in "-_"):
            escaped.append(char)
        else:
            units = char.encode("utf-16-be")
            escaped += [f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)]
    return "".join(escaped)


def worker_properties(config: ConnectConfig, plugin_path: Path) -> str:
    """The worker's properties for ``config`` (with its Kafka password when secured: the file
    is written 0600)."""
    c = config
    properties = {
        "bootstrap.servers": c.bootstrap_servers,
        "group.id": CONNECT_GROUP,
        "config.storage.topic": CONFIGS_TOPIC,
        "offset.storage.topic": OFFSETS_TOPIC,
        "status.storage.topic": STATUS_TOPIC,
        # -1: the cluster's default.replication.factor (1 on one broker, 3 on three).
        "config.storage.replication.factor": "-1",
        "offset.storage.replication.factor": "-1",
        "status.storage.replication.factor": "-1",
        "key.converter": _JSON,
        "value.converter": _JSON,
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "key.converter.decimal.format": "NUMERIC",
        "value.converter.decimal.format": "NUMERIC",
        "plugin.path": str(plugin_path),
        # Plugins found by their ServiceLoader manifests (Debezium's have them), not by
        # scanning every class of every jar: the worker starts about 12 s sooner.
        "plugin.discovery": "service_load",
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://{c.host}:{c.port}",
        "rest.advertised.listener": "http",
        "rest.advertised.host.name": c.host,
        "rest.advertised.port": str(c.port),
        # A connector may not change its Kafka clients' settings (``producer.override.*``):
        # through them it could load a config provider of its own and read any file the worker
        # can (its Kafka password, the broker's).
        "connector.client.config.override.policy": "None",
        "config.providers": CONFIG_PROVIDER,
        f"config.providers.{CONFIG_PROVIDER}.class": DIRECTORY_PROVIDER,
        f"config.providers.{CONFIG_PROVIDER}.param.allowed.paths": str(c.secrets_folder),
    }
    if c.secured:
        properties["rest.extension.classes"] = _BASIC_AUTH
    # The worker's own clients (its internal topics, the group) take the unprefixed settings,
    # as do the connectors' admin clients; the connectors' producers and consumers only their
    # prefixed ones.
    login = java_login(c.kafka_login)
    for prefix in ("", "producer.", "consumer.", "admin."):
        properties |= {f"{prefix}{key}": value for key, value in login.items()}
    return "".join(f"{key}={_escape(value)}\n" for key, value in properties.items())


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise LauncherError(
            f"Kafka Connect's REST API listens on loopback only, not on {host}: anyone who "
            "reaches it can run connectors with the worker's Kafka user"
        )


class LocalConnect:
    """Fetches, starts and stops the local Kafka Connect worker."""

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config
        self.process: ManagedProcess | None = None

    def _write_security_files(self) -> Path:
        """The REST users file (``office=<password>``) and the JAAS file naming it; returns
        the JAAS file. A users file with no user would let everyone in
        (``PropertyFileLoginModule``): it always holds the office."""
        folder = self.config.folder
        password = read_secret(self.config.password_file())
        if not password:
            raise LauncherError(f"{self.config.password_file()} is empty: remove it or fill it")
        users = write_private(
            folder / "rest-users.properties", f"{REST_USER}={_unicode_escape(password)}\n"
        )
        jaas = f'KafkaConnect {{\n  {_LOGIN_MODULE} required\n  file="{users}";\n}};\n'
        return write_private(folder / "rest-jaas.conf", jaas)

    def argv(self, jars: Path, properties: Path, jaas: Path | None) -> list[str]:
        """The worker's command line: no secret on it, only the files that hold them."""
        c = self.config
        return [
            "java",
            f"-Xmx{c.heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={CONNECT_LOG4J}",
            f"-Dkafka.logs.dir={c.log_dir.resolve()}",
            f"-D{_AUTOMATIC_PROVIDERS}={DIRECTORY_PROVIDER}",
            *([f"-Djava.security.auth.login.config={jaas}"] if jaas is not None else []),
            "-cp",
            f"{jars}/*",
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(properties),
        ]

    def start(self, *, outlive_parent: bool = False) -> None:
        """Start the worker and wait until its REST API answers and lists Debezium's
        PostgreSQL connector. ``outlive_parent``: see ``ManagedProcess.start`` (a worker
        ``xbus stack connect start`` brings back into a stack run by another command)."""
        c = self.config
        _check_loopback(c.host)
        cache = c.cache_dir.resolve()
        jars = resolve_artifacts(CONNECT_POM, cache, "kafka-connect")
        plugins = resolve_artifacts(
            DEBEZIUM_POM, cache, "debezium-postgres", exclude_transitive=True
        )
        self.process = ManagedProcess(
            "Kafka Connect",
            [],
            log_file=c.log_dir.resolve() / "stdout.log",
            pid_file=c.pid_file,
        )
        self.process.stop_leftover()
        check_port_free(c.host, c.port, "Kafka Connect", "XBUS_STACK_CONNECT_PORT")
        jaas = self._write_security_files() if c.secured else None
        # It holds the worker's Kafka password: kept with the secrets.
        properties = write_private(c.folder / "worker.properties", worker_properties(c, plugins))
        self.process.argv = self.argv(jars, properties, jaas)
        self.process.start(outlive_parent=outlive_parent)
        self.process.wait_until(
            self.answers, c.start_timeout, f"answering on {c.url} with {POSTGRES_CONNECTOR}"
        )

    def answers(self) -> bool:
        """Whether the REST API answers (as the office) and lists the PostgreSQL connector."""
        c = self.config
        try:
            auth = c.auth()
            if httpx.get(f"{c.url}/connectors", auth=auth, timeout=2.0).status_code != 200:
                return False
            plugins = httpx.get(f"{c.url}/connector-plugins", auth=auth, timeout=2.0)
        except httpx.HTTPError:
            return False
        return plugins.status_code == 200 and any(
            p.get("class") == POSTGRES_CONNECTOR for p in plugins.json()
        )

    @property
    def running(self) -> bool:
        """Whether the worker runs, whichever command started it."""
        if self.process is not None and self.process.running:
            return True
        return self._by_pid_file().recorded_pid() is not None

    def stop(self) -> None:
        """Stop the worker (it leaves its group and stops its connectors' tasks); one started
        by another command (``xbus stack connect start``) is found by its pid file."""
        ours = self.process.process.pid if self.process and self.process.process else None
        recorded = self._by_pid_file()
        if recorded.recorded_pid() not in (None, ours):
            recorded.stop_leftover("started by another command")
        if self.process is not None:
            self.process.stop(timeout=30)

    def kill(self) -> None:
        """Kill the worker at once (SIGKILL): its tasks' last offsets may not be flushed, and
        its connectors resume from the offsets last committed."""
        if self.process is not None and self.process.running:
            self.process.kill()
        else:
            self._by_pid_file().kill()

    def _by_pid_file(self) -> ManagedProcess:
        c = self.config
        return ManagedProcess(
            "Kafka Connect", [], log_file=c.log_dir.resolve() / "stdout.log", pid_file=c.pid_file
        )
