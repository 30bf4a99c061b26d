"""Session fixtures: a real Kafka broker and schema registry, and a real PostgreSQL, for the
tests that need them.

Where they come from, in order: the addresses in XBUS_BOOTSTRAP_SERVERS,
XBUS_SCHEMA_REGISTRY_URL and XBUS_POSTGRES_DSN (``make test`` starts the launcher and sets
them); else containers, where a Docker engine answers; else the launcher, started here. When
none works, a test that needs them is skipped, or fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from xbus.core.settings import BusSettings


@dataclass(frozen=True)
class Bus:
    """A reachable broker and registry, and where they came from."""

    settings: BusSettings
    origin: str

    def env(self) -> dict[str, str]:
        """The environment of a component process that should use this bus (its credentials
        come with the environment: ``xbus stack exec``, or the launcher fixture, sets them)."""
        return {
            **os.environ,
            "XBUS_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "XBUS_SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
        }


_ORIGIN: list[str] = []


def _reachable(settings: BusSettings) -> str | None:
    """None if broker and registry answer, else what did not."""
    try:
        metadata = AdminClient(settings.kafka_config()).list_topics(timeout=10)
        if not metadata.brokers:
            return f"no broker answers on {settings.bootstrap_servers}"
    except Exception as exc:
        return f"no broker answers on {settings.bootstrap_servers}: {exc}"
    try:
        httpx.get(
            f"{settings.schema_registry_url}/subjects", auth=settings.registry_auth(), timeout=10
        ).raise_for_status()
    except httpx.HTTPError as exc:
        return f"no schema registry answers on {settings.schema_registry_url}: {exc}"
    return None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_containers() -> Generator[Bus, None, None]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
        registry = DockerContainer("apicurio/apicurio-registry:3.0.9").with_exposed_ports(8080)
        with registry:
            wait_for_logs(registry, "Installed features", timeout=120)
            url = (
                f"http://{registry.get_container_host_ip()}:"
                f"{registry.get_exposed_port(8080)}/apis/ccompat/v7"
            )
            yield Bus(
                BusSettings(
                    bootstrap_servers=kafka.get_bootstrap_server(), schema_registry_url=url
                ),
                "containers",
            )


def _from_launcher() -> Generator[Bus, None, None]:
    from xbus.deploy.stack import LocalStack

    stack = LocalStack.ephemeral()
    stack.start()
    # As ``xbus stack exec`` does: the stack's addresses and credentials, for this process and
    # the components it starts.
    os.environ.update(stack.client_env())
    try:
        yield Bus(BusSettings(), "launcher (fixture)")
    finally:
        stack.stop()
        stack.remove_data()


def _missing(reason: str, needed: str = "a Kafka broker and a schema registry") -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the tests need {needed}: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bus() -> Iterator[Bus]:
    """The broker and registry every integration test runs against."""
    if os.environ.get("XBUS_BOOTSTRAP_SERVERS"):
        settings = BusSettings()
        problem = _reachable(settings)
        if problem:
            _missing(problem)
        _ORIGIN.append(f"a real broker, from the environment: {settings.bootstrap_servers}")
        yield Bus(settings, "environment")
        return
    source = _from_containers if _docker_answers() else _from_launcher
    try:
        generator = source()
        found = next(generator)
    except Exception as exc:
        _missing(f"could not start a broker and registry ({source.__name__}): {exc}")
        return
    _ORIGIN.append(f"a real broker, {found.origin}: {found.settings.bootstrap_servers}")
    yield found
    generator.close()


def _postgres_answers(dsn: str) -> str | None:
    """None if PostgreSQL at ``dsn`` takes a connection, else why not."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=10).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL answers at {dsn}: {exc}"
    return None


def _postgres_from_container() -> Generator[str, None, None]:
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16", username="xbus", password="xbus", dbname="xbus", driver=None
    )
    with container:
        yield container.get_connection_url()


def _postgres_from_launcher() -> Generator[str, None, None]:
    from xbus.deploy.postgres import LocalPostgres, PostgresConfig
    from xbus.deploy.process import free_port

    home = Path(tempfile.mkdtemp(prefix="xbus-postgres-"))
    # PostgreSQL may run as its own system user (when we are root), which must reach its data.
    home.chmod(0o711)
    postgres = LocalPostgres(
        PostgresConfig(
            port=free_port(),
            data_dir=home / "data",
            run_dir=home / "run",
            log_dir=home,
            secrets_dir=home / "secrets",
        )
    )
    before = os.environ.get("PGPASSFILE")
    try:
        postgres.start()
        # The DSN holds no password; libpq (here and in the components the tests start) reads
        # it from the file PGPASSFILE names, as under `xbus stack exec`.
        os.environ["PGPASSFILE"] = str(postgres.config.pgpass_file)
        yield postgres.dsn
    finally:
        if before is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = before
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The URL of a real PostgreSQL database the tests may create tables in."""
    needed = "a PostgreSQL server"
    dsn = os.environ.get("XBUS_POSTGRES_DSN")
    if dsn:
        problem = _postgres_answers(dsn)
        if problem:
            _missing(problem, needed)
        _ORIGIN.append(f"a real PostgreSQL, from the environment: {dsn}")
        yield dsn
        return
    origin, source = (
        ("containers", _postgres_from_container)
        if _docker_answers()
        else ("launcher (fixture)", _postgres_from_launcher)
    )
    try:
        generator = source()
        dsn = next(generator)
    except Exception as exc:
        _missing(f"could not start PostgreSQL ({source.__name__}): {exc}", needed)
        return
    _ORIGIN.append(f"a real PostgreSQL, {origin}: {dsn}")
    yield dsn
    generator.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the broker or PostgreSQL is a ``broker`` test, whether or not its
    module says so (``make unit`` leaves those out); one that stops Kafka nodes is a
    ``cluster`` test (``make test`` runs those on a stack of three)."""
    needs = {"bus", "registered", "granted", "postgres_dsn"}
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if needs & names:
            item.add_marker(pytest.mark.broker)
        if "cluster" in names:
            item.add_marker(pytest.mark.cluster)


def pytest_report_header(config: pytest.Config) -> list[str]:
    servers = os.environ.get("XBUS_BOOTSTRAP_SERVERS")
    registry = os.environ.get("XBUS_SCHEMA_REGISTRY_URL")
    postgres = os.environ.get("XBUS_POSTGRES_DSN")
    return [
        f"xbus: real Kafka broker at {servers}, schema registry at {registry}"
        if servers
        else "xbus: broker and registry started by the session fixture when first needed",
        f"xbus: real PostgreSQL at {postgres}"
        if postgres
        else "xbus: PostgreSQL started by the session fixture when first needed",
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for origin in _ORIGIN:
        terminalreporter.write_line(f"xbus integration tests ran against {origin}")


@pytest.fixture(scope="session")
def registered(bus: Bus) -> Bus:
    """The bus with the catalog's schemas registered (what ``xbus schemas register`` does)."""
    from xbus.core.catalog import Catalog
    from xbus.core.contracts import register_catalog
    from xbus.core.serde import registry_client

    register_catalog(Catalog.load(bus.settings.schemas_dir), registry_client(bus.settings))
    return bus


@pytest.fixture(scope="session")
def granted(registered: Bus) -> Bus:
    """The bus with the demo grants of ``grants/`` in force and the districts table set."""
    from tests.support.checkout import ROOT
    from xbus.core.catalog import Catalog
    from xbus.producers.demodata import DISTRICTS
    from xbus.streams.grant_files import apply_grants
    from xbus.streams.state import set_reference_table

    catalog = Catalog.load(registered.settings.schemas_dir)
    apply_grants(registered.settings, catalog, [ROOT / "grants"])
    set_reference_table(registered.settings, "districts", DISTRICTS)
    return registered
