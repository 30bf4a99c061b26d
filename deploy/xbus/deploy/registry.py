"""The schema registry on loopback: Apicurio Registry 3.0.9 from Maven Central, serving the
Confluent REST API under ``/apis/ccompat/v7``, keeping its schemas in the bus's own Kafka
(its ``kafkasql`` storage: a journal topic, so schemas survive restarts of either).

Secured (the default): every call needs HTTP basic credentials of one of three users, each
with one of Apicurio's roles: ``office`` (sr-admin: the data-sharing office registers datasets
and sets compatibility, the global default included), ``engine`` (sr-developer: registers the
subscribers' view schemas) and ``reader`` (sr-readonly: publishers, connectors and tools that
only decode). Passwords are generated into ``<secrets>/registry/<user>.password``; the registry
gets them as MD5 digests in a 0600 configuration file, never on its command line. Its own Kafka
storage logs in as the SCRAM user ``registry``, allowed only its journal topics and groups."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from xbus.core.catalog import DEFAULT_COMPATIBILITY
from xbus.core.errors import ConfigurationError
from xbus.core.secret_files import password_file, read_secret, write_private
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.kafka import java_login
from xbus.deploy.process import ManagedProcess, check_port_free

# Shipped inside the package (``resources/registry``); Maven needs real file paths.
REGISTRY_DIR = Path(str(files("xbus.deploy").joinpath("resources", "registry")))
REGISTRY_POM = REGISTRY_DIR / "pom.xml"
STAND_IN_PARENT = REGISTRY_DIR / "apicurio-parent.pom"
CCOMPAT_PATH = "/apis/ccompat/v7"
JOURNAL_TOPIC = "_xbus.schemas"
# Apicurio names its consumer group "<registry.id>-<uuid>", registry.id being this.
_GROUP_PREFIX = "apicurio-"
# Users of the registry's HTTP API and their Apicurio roles.
OFFICE_USER, ENGINE_USER, READER_USER = "office", "engine", "reader"
ROLES = {OFFICE_USER: "sr-admin", ENGINE_USER: "sr-developer", READER_USER: "sr-readonly"}


@dataclass
class RegistryConfig:
    """Where the registry listens, and the Kafka cluster that stores its schemas."""

    bootstrap_servers: str
    # The librdkafka-style settings of the registry's own Kafka user (security.protocol,
    # sasl.*); empty for an unsecured broker.
    kafka_login: dict[str, Any] = field(default_factory=dict, repr=False)
    secured: bool = True
    secrets_dir: Path = Path(".xbus/secrets")
    host: str = "127.0.0.1"
    port: int = 8081
    management_port: int = 9000
    cache_dir: Path = Path(".xbus/cache")
    run_dir: Path = Path(".xbus/run")
    log_dir: Path = Path(".xbus/data/registry")
    heap: str = "384m"
    start_timeout: float = 120.0

    @property
    def url(self) -> str:
        """The Confluent-API base URL clients use."""
        return f"http://{self.host}:{self.port}{CCOMPAT_PATH}"

    def password_file(self, user: str) -> Path:
        """The file holding the password of ``user`` of the registry (made on first use)."""
        return password_file(self.secrets_dir.resolve() / "registry" / f"{user}.password")

    def auth(self, user: str = OFFICE_USER) -> tuple[str, str] | None:
        """HTTP basic credentials of ``user``; none for an unsecured registry."""
        return (user, read_secret(self.password_file(user))) if self.secured else None

    def client_env(self, user: str) -> dict[str, str]:
        """The ``XBUS_`` settings with which an xbus component reaches the registry as
        ``user`` (its password by file)."""
        env = {"XBUS_SCHEMA_REGISTRY_URL": self.url}
        if self.secured:
            env |= {
                "XBUS_SCHEMA_REGISTRY_USERNAME": user,
                "XBUS_SCHEMA_REGISTRY_PASSWORD_FILE": str(self.password_file(user)),
            }
        return env


def storage_acls(user: str) -> list[AclBinding]:
    """What the registry's Kafka user may do: everything on its journal topics and groups, and
    nothing else."""
    return [
        AclBinding(
            kind,
            name,
            ResourcePatternType.PREFIXED,
            f"User:{user}",
            "*",
            AclOperation.ALL,
            AclPermissionType.ALLOW,
        )
        for kind, name in ((ResourceType.TOPIC, JOURNAL_TOPIC), (ResourceType.GROUP, _GROUP_PREFIX))
    ]


def allow_storage(admin_config: dict[str, Any], user: str) -> None:
    """Create the ACLs of ``storage_acls(user)`` (an ACL that exists already is kept)."""
    admin = AdminClient(admin_config)
    for binding, future in admin.create_acls(storage_acls(user)).items():
        try:
            future.result(30)
        except Exception as exc:
            raise ConfigurationError(f"could not allow the registry {binding}: {exc}") from exc


def _security_properties(config: RegistryConfig) -> str:
    """The registry's configuration file: its users (MD5 digests of "user:Quarkus:password",
    as Quarkus's embedded users take them), role checks, and its Kafka login."""
    lines = [
        "quarkus.http.auth.basic=true",
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=false",
        "quarkus.security.users.embedded.algorithm=DIGEST-MD5",
        "apicurio.auth.role-based-authorization=true",
        "apicurio.auth.role-source=token",
        "apicurio.auth.anonymous-read-access.enabled=false",
        "apicurio.auth.owner-only-authorization=true",
    ]
    for user, role in ROLES.items():
        password = read_secret(config.password_file(user))
        digest = hashlib.md5(f"{user}:Quarkus:{password}".encode()).hexdigest()
        lines += [
            f"quarkus.security.users.embedded.users.{user}={digest}",
            f"quarkus.security.users.embedded.roles.{user}={role}",
        ]
    lines += [f"apicurio.kafka.common.{k}={v}" for k, v in java_login(config.kafka_login).items()]
    return "\n".join(lines) + "\n"


class LocalRegistry:
    """Fetches, starts and stops the local schema registry."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        """Start the registry and wait until its Confluent API answers."""
        c = self.config
        app = resolve_artifacts(
            REGISTRY_POM,
            c.cache_dir.resolve(),
            "apicurio-registry",
            stand_in_parents=[STAND_IN_PARENT],
            exclude_transitive=True,
        )
        runner = next(app.glob("apicurio-registry-app-*-runner.jar"))
        pid_file = c.run_dir.resolve() / f"registry-{c.port}.pid"
        # It holds the users' digests and the Kafka password: kept with the secrets.
        settings = write_private(
            c.secrets_dir.resolve() / "registry" / "registry.properties",
            _security_properties(c) if c.secured else "",
        )
        argv = [
            "java",
            f"-Xmx{c.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.host={c.host}",
            f"-Dquarkus.http.port={c.port}",
            f"-Dquarkus.management.port={c.management_port}",
            f"-Dquarkus.management.host={c.host}",
            "-Dapicurio.storage.kind=kafkasql",
            f"-Dapicurio.kafkasql.bootstrap.servers={c.bootstrap_servers}",
            f"-Dapicurio.kafkasql.topic={JOURNAL_TOPIC}",
            f"-Dapicurio.kafkasql.snapshots.topic={JOURNAL_TOPIC}-snapshots",
            f"-Dapicurio.events.kafka.topic={JOURNAL_TOPIC}-events",
            f"-Dquarkus.config.locations=file:{settings}",
            f"-Dxbus.pidfile={pid_file}",
            "-jar",
            str(runner),
        ]
        self.process = ManagedProcess(
            "schema registry",
            argv,
            log_file=c.log_dir.resolve() / "registry.log",
            pid_file=pid_file,
            cwd=app,
        )
        self.process.stop_leftover()
        check_port_free(c.host, c.port, "the schema registry", "XBUS_STACK_REGISTRY_PORT")
        check_port_free(
            c.host,
            c.management_port,
            "the registry's management endpoint",
            "XBUS_STACK_REGISTRY_MANAGEMENT_PORT",
        )
        self.process.start()
        self.process.wait_until(self._answers, c.start_timeout, f"answering on {c.url}")
        self.set_default_compatibility()

    def set_default_compatibility(self) -> None:
        """Set the registry's global compatibility to the catalog's default
        (``DEFAULT_COMPATIBILITY``): Apicurio starts with ``NONE``, which would leave a subject
        made outside ``xbus schemas register`` without a guard."""
        url = f"{self.config.url}/config"
        try:
            answer = httpx.put(
                url,
                json={"compatibility": DEFAULT_COMPATIBILITY},
                auth=self.config.auth(OFFICE_USER),
                timeout=10.0,
            )
        except httpx.HTTPError as exc:
            raise ConfigurationError(
                f"could not set the compatibility default at {url}: {exc}"
            ) from exc
        if answer.status_code != 200:
            raise ConfigurationError(
                f"the registry refused the compatibility default {DEFAULT_COMPATIBILITY} at "
                f"{url}: HTTP {answer.status_code} {answer.text[:200]}"
            )

    def _answers(self) -> bool:
        # Readiness, which needs no credentials; the Confluent API too, as the office.
        base = f"http://{self.config.host}:{self.config.port}"
        try:
            return (
                httpx.get(f"{base}/health/ready", timeout=1.0).status_code == 200
                and httpx.get(
                    f"{self.config.url}/subjects", auth=self.config.auth(), timeout=1.0
                ).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the registry; one this process did not start (``LocalStack.attach``) is found
        by its pid file."""
        if self.process is not None:
            self.process.stop(timeout=30)
            return
        pid_file = self.config.run_dir.resolve() / f"registry-{self.config.port}.pid"
        ManagedProcess("registry", [], log_file=Path(os.devnull), pid_file=pid_file).stop_leftover(
            "started by another command"
        )
