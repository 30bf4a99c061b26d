"""The schema registry on loopback: Apicurio Registry 3.0.9 from Maven Central, serving the
Confluent REST API under ``/apis/ccompat/v7``, keeping its schemas in the bus's own Kafka
(its ``kafkasql`` storage: a journal topic, so schemas survive restarts of either)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import httpx

from xbus.core.catalog import DEFAULT_COMPATIBILITY
from xbus.core.errors import ConfigurationError
from xbus.deploy.jars import resolve_artifacts
from xbus.deploy.process import ManagedProcess, check_port_free

# Shipped inside the package (``resources/registry``); Maven needs real file paths.
REGISTRY_DIR = Path(str(files("xbus.deploy").joinpath("resources", "registry")))
REGISTRY_POM = REGISTRY_DIR / "pom.xml"
STAND_IN_PARENT = REGISTRY_DIR / "apicurio-parent.pom"
CCOMPAT_PATH = "/apis/ccompat/v7"
JOURNAL_TOPIC = "_xbus.schemas"


@dataclass
class RegistryConfig:
    """Where the registry listens, and the Kafka cluster that stores its schemas."""

    bootstrap_servers: str
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
            answer = httpx.put(url, json={"compatibility": DEFAULT_COMPATIBILITY}, timeout=10.0)
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
        try:
            return httpx.get(f"{self.config.url}/subjects", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the registry."""
        if self.process is not None:
            self.process.stop(timeout=30)
