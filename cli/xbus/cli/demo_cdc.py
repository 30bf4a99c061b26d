"""The demo's department whose records live in its own database: the civil affairs bureau's
marriage registrations, written with plain SQL into a database of the stack's PostgreSQL,
captured by Debezium on the stack's Kafka Connect and bridged into
civil_affairs.marriage_registration, which the public security bureau receives under its
grant (``make run``; docs/cdc.md)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from xbus.core.catalog import Catalog
from xbus.core.errors import ConfigurationError
from xbus.deploy.process import ManagedProcess
from xbus.deploy.stack import LocalStack
from xbus.producers.cdc.connector import ConnectClient, connector_config
from xbus.producers.cdc.demo import prepare_table
from xbus.producers.cdc.readiness import check_source
from xbus.producers.cdc.sources import require_sources

CDC_BRIDGE_METRICS = 9110
DEMO_SOURCES = Path("cdc")


def start_cdc_demo(stack: LocalStack, catalog: Catalog) -> ManagedProcess:
    """Make the bureau's database ready, apply its source's connector, and start the bridge
    and the registry office writing; returns the writer (whose log the panel follows)."""
    [source] = require_sources([DEMO_SOURCES], catalog)
    db = source.database
    # The source file names the stack's default port; a stack on another port is the same
    # server to the demo.
    source = source.model_copy(
        update={"database": db.model_copy(update={"port": stack.postgres.config.port})}
    )
    secrets = stack.connect.config.secrets_folder
    owner_password = stack.secrets_dir / "postgres" / f"{db.name}.password"
    owner = stack.postgres.department_database(
        db.name, owner_password, db.user, secrets / db.password_file
    )
    with psycopg.connect(
        owner, password=owner_password.read_text().strip(), autocommit=True
    ) as connection:
        prepare_table(connection, db.user)
    dataset = catalog.get(source.department, source.dataset)
    missing = check_source(source, dataset, secrets)
    if missing:
        raise ConfigurationError(
            "the demo's department database is not ready: " + "; ".join(m.what for m in missing)
        )
    client = ConnectClient(stack.connect.config.url, stack.connect.config.auth())
    try:
        client.apply(source.connector, connector_config(source, dataset, secrets))
    finally:
        client.close()
    stack.start_component(
        "cdc bridge",
        ["run", "cdc-bridge", str(DEMO_SOURCES), "--metrics-port", str(CDC_BRIDGE_METRICS)],
        "cdc-bridge.log",
        kafka_user="service.cdc_bridge",
        registry_user="reader",
    )
    return stack.start_component(
        "registry office",
        ["run", "cdc-demo", "--dsn", owner, "--password-file", str(owner_password)],
        "cdc-demo.log",
        # It writes SQL only; of Kafka it gets the bureau's own user, nothing more.
        kafka_user="department.civil_affairs",
    )
