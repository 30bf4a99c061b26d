"""Fixtures of the CDC tests: a department's database on the stack's PostgreSQL, and Kafka
Connect (``xbus stack exec --cdc`` starts it)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import _missing
from tests.support.department_database import (
    DepartmentDatabase,
    drop_department_database,
    make_department_database,
    superuser_conninfo,
)
from xbus.producers.cdc.connector import ConnectClient
from xbus.producers.cdc.settings import CdcSettings


@pytest.fixture(scope="session")
def pg_superuser(postgres_dsn: str) -> str:
    """The superuser's connection string on the tests' PostgreSQL server."""
    found = superuser_conninfo(postgres_dsn)
    if found is None:
        _missing("no PostgreSQL superuser password in XBUS_SECRETS_DIR", "xbus stack exec")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def connect() -> Iterator[ConnectClient]:
    """Kafka Connect's REST API, as the office."""
    if not os.environ.get("XBUS_CONNECT_URL"):
        _missing("XBUS_CONNECT_URL is not set", "Kafka Connect (xbus stack exec --cdc)")
    settings = CdcSettings()
    client = ConnectClient(settings.connect_url, settings.connect_auth())
    yield client
    client.close()


@pytest.fixture
def department_database(pg_superuser: str) -> Iterator[Callable[..., DepartmentDatabase]]:
    """Makes department databases (``replication=False``: a role that may not replicate);
    each is dropped afterwards with its replication slots."""
    made: list[DepartmentDatabase] = []

    def make(*, replication: bool = True) -> DepartmentDatabase:
        database = make_department_database(
            pg_superuser, CdcSettings().cdc_secrets_dir, replication=replication
        )
        made.append(database)
        return database

    yield make
    for database in made:
        drop_department_database(database)
