"""A CDC source as a Debezium connector on Kafka Connect, through Connect's REST API.

The connector reads the table through the department's own publication (it makes none) and
its own replication slot, snapshots the table first and then streams, and writes every
change as JSON to the source's ``cdc.<department>.<dataset>`` topic (one partition: the
table's changes stay in commit order). Only the columns the source maps are read: the rest
never leaves the department's server. The replication user's password stays in its file: the
configuration names it through Connect's directory config provider, so neither Connect's
REST API nor its configuration topic ever holds it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from xbus.core.catalog import Dataset
from xbus.core.errors import ConfigurationError, XbusError
from xbus.producers.cdc.readiness import conninfo
from xbus.producers.cdc.sources import CdcSource

POLL_INTERVAL_MS = 20
"""How often Debezium hands captured changes to Connect (its default, 500 ms, adds ~300 ms to
every change's way)."""


class ConnectError(XbusError):
    """Kafka Connect could not be reached or refused a request."""

    reason = "connect_unavailable"


def connector_config(source: CdcSource, dataset: Dataset, secrets_dir: Path) -> dict[str, str]:
    """The Debezium PostgreSQL connector's configuration for ``source``."""
    db = source.database
    columns = sorted(set(source.column_map(dataset).values()))
    table = re.escape(source.table)
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": db.host,
        "database.port": str(db.port),
        "database.dbname": db.name,
        "database.sslmode": db.sslmode,
        "database.user": db.user,
        "database.password": f"${{dir:{secrets_dir.resolve()}:{db.password_file}}}",
        "topic.prefix": source.topic,
        "plugin.name": "pgoutput",
        "publication.name": source.publication,
        "publication.autocreate.mode": "disabled",
        "slot.name": source.slot,
        "snapshot.mode": "initial",
        "table.include.list": table,
        "column.include.list": ",".join(f"{table}\\.{re.escape(c)}" for c in columns),
        "decimal.handling.mode": "precise",
        "time.precision.mode": "connect",
        "tombstones.on.delete": "false",
        "poll.interval.ms": str(POLL_INTERVAL_MS),
        # Debezium names its topic <prefix>.<schema>.<table>; the bus's name is the source's.
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": source.topic,
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "-1",
        # Debezium confirms the slot once its records are on Kafka: they are the only copy
        # left while the bridge cannot publish (30 days, as the dead letters).
        "topic.creation.default.retention.ms": str(30 * 24 * 3600 * 1000),
    }


@dataclass(frozen=True)
class ConnectorState:
    """What Kafka Connect says of one connector: its state, its task's, and the task's error."""

    connector: str
    task: str
    error: str | None = None


class ConnectClient:
    """Kafka Connect's REST API."""

    def __init__(self, url: str, auth: tuple[str, str] | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(auth=auth, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self._http.request(method, f"{self.url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"Kafka Connect at {self.url} did not answer ({exc}); is it running "
                "(xbus stack up --cdc)?"
            ) from exc
        if answer.status_code == 401:
            raise ConnectError(
                f"Kafka Connect at {self.url} refused the credentials: set "
                "XBUS_CONNECT_USERNAME and XBUS_CONNECT_PASSWORD_FILE"
            )
        return answer

    def apply(self, name: str, config: dict[str, str]) -> bool:
        """Create or update the connector ``name``; whether it was new."""
        answer = self._call("PUT", f"/connectors/{name}/config", json=config)
        if answer.status_code not in (200, 201):
            raise ConnectError(
                f"Kafka Connect refused the connector {name}: HTTP {answer.status_code} "
                f"{_message(answer)}"
            )
        return answer.status_code == 201

    def state(self, name: str) -> ConnectorState | None:
        """The connector's state, or None if Connect has no such connector."""
        answer = self._call("GET", f"/connectors/{name}/status")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise ConnectError(f"Kafka Connect: HTTP {answer.status_code} {_message(answer)}")
        body = answer.json()
        tasks = body.get("tasks") or []
        task = tasks[0] if tasks else {}
        trace = task.get("trace") or body["connector"].get("trace")
        return ConnectorState(
            body["connector"]["state"],
            task.get("state", "UNASSIGNED"),
            trace.strip().splitlines()[0] if trace else None,
        )

    def remove(self, name: str, *, forget_offsets: bool = True) -> bool:
        """Delete the connector; whether there was one. With ``forget_offsets`` (the
        default) its source offsets go too: they record how far Debezium read the slot that
        is dropped with it, and a connector made again under the name would take them and skip
        its snapshot, losing every change made in between. Connect forgets offsets only of a
        stopped connector, so it is stopped first."""
        if forget_offsets and self.state(name) is not None:
            self._stop(name)
            answer = self._call("DELETE", f"/connectors/{name}/offsets")
            if answer.status_code not in (200, 404):
                raise ConnectError(
                    f"Kafka Connect could not forget the offsets of {name}: HTTP "
                    f"{answer.status_code} {_message(answer)}"
                )
        answer = self._call("DELETE", f"/connectors/{name}")
        if answer.status_code == 404:
            return False
        if answer.status_code not in (200, 204):
            raise ConnectError(
                f"Kafka Connect could not delete {name}: HTTP {answer.status_code} "
                f"{_message(answer)}"
            )
        return True

    def _stop(self, name: str, timeout: float = 60.0) -> None:
        """Stop the connector and wait until Connect says it is stopped."""
        answer = self._call("PUT", f"/connectors/{name}/stop")
        if answer.status_code not in (200, 202, 204):
            raise ConnectError(
                f"Kafka Connect could not stop {name}: HTTP {answer.status_code} {_message(answer)}"
            )
        deadline = time.monotonic() + timeout
        while (state := self.state(name)) is not None and state.connector != "STOPPED":
            if time.monotonic() > deadline:
                raise ConnectError(f"{name} did not stop within {timeout:.0f}s ({state})")
            time.sleep(0.2)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text))[:500]
    except ValueError:
        return answer.text[:500]


def drop_slot(source: CdcSource, secrets_dir: Path, timeout: float = 60.0) -> bool:
    """Drop the source's replication slot once no one reads it (a removed connector's task
    stops within seconds); whether there was one. An abandoned slot keeps WAL on the
    department's server."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(source, secrets_dir), autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (source.slot,)
            ).fetchone()
            if row is None:
                return False
            if not row[0]:
                try:
                    connection.execute("SELECT pg_drop_replication_slot(%s)", (source.slot,))
                    return True
                except psycopg.errors.ObjectInUse:
                    pass  # taken again meanwhile: wait
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the replication slot {source.slot} on {source.database.host} is still in "
                    f"use after {timeout:.0f}s; stop what reads it, then "
                    f"SELECT pg_drop_replication_slot('{source.slot}')"
                )
            time.sleep(0.5)


@dataclass(frozen=True)
class SlotState:
    """The source's replication slot: whether a connector reads it, and how much WAL it holds
    back (bytes between the server's current WAL position and what the slot confirmed)."""

    active: bool
    behind_bytes: int


def slot_state(source: CdcSource, secrets_dir: Path) -> SlotState | None:
    """The slot's state, None if there is no slot."""
    with psycopg.connect(conninfo(source, secrets_dir), autocommit=True) as connection:
        row = connection.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (source.slot,),
        ).fetchone()
    if row is None:
        return None
    return SlotState(bool(row[0]), int(row[1] or 0))
