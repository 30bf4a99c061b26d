"""Is a department's database ready for change data capture? ``xbus cdc check`` asks it as
the replication user, and says exactly what is missing and the statement that mends it.

What Debezium needs of PostgreSQL, and why each matters:

- ``wal_level = logical``: otherwise the server writes no logical changes to decode;
- ``max_slot_wal_keep_size`` set: a slot no one reads (a stopped connector) otherwise keeps
  WAL until the server's disk is full;
- a free replication slot and WAL sender;
- a role with ``REPLICATION`` that may read the table (for the snapshot), and may connect for
  replication (``pg_hba.conf``);
- ``REPLICA IDENTITY FULL`` on the table: without it an UPDATE carries no row before, and a
  DELETE only the key, its other columns filled with empty values that look like data;
- a publication for the table that publishes inserts, updates and deletes (the connector does
  not make its own: the department decides what is published);
- every column the source file maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from xbus.core.catalog import Dataset
from xbus.producers.cdc.sources import CdcSource


@dataclass(frozen=True)
class Missing:
    """One prerequisite the database lacks: what, and how to mend it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


def conninfo(source: CdcSource, secrets_dir: Path, **extra: str) -> str:
    """The libpq connection string of the source's replication user (password included: for
    the connection only, never to print)."""
    db = source.database
    return make_conninfo(
        host=db.host,
        port=db.port,
        dbname=db.name,
        user=db.user,
        password=db.password(secrets_dir),
        connect_timeout=5,
        sslmode=db.sslmode,
        application_name="xbus cdc",
        **extra,
    )


def _setting(connection: psycopg.Connection, name: str) -> str:
    row = connection.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    return "" if row is None else str(row[0])


def check_source(source: CdcSource, dataset: Dataset, secrets_dir: Path) -> list[Missing]:
    """Everything the source's database lacks for CDC (empty: ready)."""
    db = source.database
    where = f"{db.user}@{db.host}:{db.port}/{db.name}"
    password_file = secrets_dir / db.password_file
    try:
        if password_file.read_bytes().endswith((b"\n", b"\r")):
            return [
                Missing(
                    f"{password_file} ends with a line break, which Kafka Connect would send "
                    "as part of the password",
                    f"write the password alone: printf '%s' \"$PASSWORD\" > {password_file}",
                )
            ]
    except OSError as exc:
        return [Missing(f"cannot read the password of {db.user}: {exc}", "write the file")]
    try:
        connection = psycopg.connect(conninfo(source, secrets_dir), autocommit=True)
    except psycopg.OperationalError as exc:
        return [
            Missing(
                f"cannot connect to {where}: {str(exc).strip().splitlines()[-1]}",
                f"check the address, that the role {db.user} exists with LOGIN, and its "
                f"password in {secrets_dir / db.password_file}",
            )
        ]
    except OSError as exc:  # the password file
        return [Missing(f"cannot read the password of {db.user}: {exc}", "write the file")]
    with connection:
        server = _server(connection, source)
        role = _role(connection, source)
        table = _table(connection, source, dataset)
    # Only a role that may replicate, on a server that decodes, can be let in for it or not.
    connection_refused = (
        [] if role or server else _replication_connection(source, secrets_dir, where)
    )
    return server + role + connection_refused + table


def _server(connection: psycopg.Connection, source: CdcSource) -> list[Missing]:
    missing = []
    wal_level = _setting(connection, "wal_level")
    if wal_level != "logical":
        missing.append(
            Missing(
                f"wal_level is {wal_level}, not logical: the server writes no changes to decode",
                "set wal_level = logical in postgresql.conf and restart the server",
            )
        )
    if _setting(connection, "max_slot_wal_keep_size") in ("-1", ""):
        missing.append(
            Missing(
                "max_slot_wal_keep_size is unlimited: a replication slot no one reads would "
                "keep WAL until the disk is full",
                "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB' (what the disk can spare), "
                "then SELECT pg_reload_conf()",
            )
        )
    slots = int(_setting(connection, "max_replication_slots") or 0)
    used, ours = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE slot_name = %s) FROM pg_replication_slots",
        (source.slot,),
    ).fetchone() or (0, 0)
    if not ours and used >= slots:
        missing.append(
            Missing(
                f"no free replication slot ({used} of max_replication_slots = {slots} in use)",
                "raise max_replication_slots in postgresql.conf and restart the server, or "
                "drop a slot no one uses (pg_drop_replication_slot)",
            )
        )
    if int(_setting(connection, "max_wal_senders") or 0) < 1:
        missing.append(
            Missing(
                "max_wal_senders is 0: no replication connection is possible",
                "set max_wal_senders = 10 in postgresql.conf and restart the server",
            )
        )
    return missing


def _role(connection: psycopg.Connection, source: CdcSource) -> list[Missing]:
    row = connection.execute(
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row and row[0]:
        return []
    user = source.database.user
    return [
        Missing(
            f"the role {user} may not replicate",
            f"ALTER ROLE {user} REPLICATION",
        )
    ]


def _table(connection: psycopg.Connection, source: CdcSource, dataset: Dataset) -> list[Missing]:
    table, user = source.table, source.database.user
    exists = connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if exists is None or exists[0] is None:
        return [
            Missing(
                f"no table {table} in {source.database.name}",
                f"create it, or name the table that holds {source.name} in {source.path}",
            )
        ]
    missing = []
    keyed = connection.execute(
        "SELECT 1 FROM pg_index WHERE indrelid = %s::regclass AND indisprimary", (table,)
    ).fetchone()
    if keyed is None:
        mapped = source.column_map(dataset)
        key = ", ".join(mapped.get(k, k) for k in dataset.business_key)
        missing.append(
            Missing(
                f"{table} has no primary key: Debezium keys each change by it, and the bus "
                "tells changes apart by it",
                f"ALTER TABLE {table} ADD PRIMARY KEY ({key})",
            )
        )
    (identity,) = connection.execute(
        "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (table,)
    ).fetchone() or ("",)
    if identity != "f":
        missing.append(
            Missing(
                f"{table} has REPLICA IDENTITY {_IDENTITIES.get(identity, identity)}, not FULL: "
                "updates would carry no row before, and deletes only the key with the other "
                "columns empty",
                f"ALTER TABLE {table} REPLICA IDENTITY FULL",
            )
        )
    (readable,) = connection.execute(
        "SELECT has_table_privilege(current_user, %s, 'SELECT')", (table,)
    ).fetchone() or (False,)
    if not readable:
        missing.append(
            Missing(
                f"the role {user} may not read {table} (the snapshot reads it)",
                f"GRANT SELECT ON {table} TO {user}",
            )
        )
    columns = {
        name
        for (name,) in connection.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            (table,),
        )
    }
    wanted = source.column_map(dataset)
    absent = [
        f"{column} (for {field})" for field, column in wanted.items() if column not in columns
    ]
    if absent:
        missing.append(
            Missing(
                f"{table} has no column {', '.join(absent)}",
                f"map each field to the column that holds it under columns: in {source.path}",
            )
        )
    missing += _publication(connection, source)
    return missing


_IDENTITIES = {"d": "DEFAULT", "n": "NOTHING", "i": "USING INDEX", "f": "FULL"}


def _publication(connection: psycopg.Connection, source: CdcSource) -> list[Missing]:
    name, table = source.publication, source.table
    row = connection.execute(
        "SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = %s", (name,)
    ).fetchone()
    if row is None:
        return [
            Missing(
                f"no publication {name}",
                f"CREATE PUBLICATION {name} FOR TABLE {table} "
                "WITH (publish = 'insert, update, delete')",
            )
        ]
    missing = []
    lacking = [op for op, on in zip(("insert", "update", "delete"), row, strict=True) if not on]
    if lacking:
        missing.append(
            Missing(
                f"the publication {name} does not publish {', '.join(lacking)}",
                f"ALTER PUBLICATION {name} SET (publish = 'insert, update, delete')",
            )
        )
    listed = connection.execute(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s "
        "AND tablename = %s",
        (name, source.schema_name, source.table_name),
    ).fetchone()
    if listed is None:
        missing.append(
            Missing(
                f"the publication {name} does not include {table}",
                f"ALTER PUBLICATION {name} ADD TABLE {table}",
            )
        )
    return missing


def _replication_connection(source: CdcSource, secrets_dir: Path, where: str) -> list[Missing]:
    """Whether the server takes a replication connection from the user (pg_hba.conf has its
    own lines for them)."""
    try:
        psycopg.connect(conninfo(source, secrets_dir, replication="database")).close()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1]
        return [
            Missing(
                f"{where} refuses a replication connection: {reason}",
                f"add 'host replication {source.database.user} <Kafka Connect's address>/32 "
                "scram-sha-256' to pg_hba.conf, then SELECT pg_reload_conf()",
            )
        ]
    return []
