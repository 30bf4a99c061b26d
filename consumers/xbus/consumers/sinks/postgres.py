"""The PostgreSQL sink: keeps one table per dataset in the subscriber's own database up to
date, applying each event once.

- The table ``<db schema>.<dataset>`` is created from the subscriber-view schema, one typed
  column per field, keyed by the topic's business key (``_xbus_key``); a later view that adds
  fields adds columns.
- CREATE, UPDATE and SNAPSHOT upsert the row; DELETE deletes it and leaves a small tombstone.
- A row changes only for an event newer than the one it holds (event time, then offset): a
  repeated or late event never rolls it back, and a late change never brings back a deleted
  row.
- Each batch's rows and the next offset of every partition it came from commit in one
  transaction; on (re)assignment the connector starts from those stored offsets, so a crash
  at any point applies no event twice and loses none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from xbus.consumers.delivery import Delivery
from xbus.consumers.exceptions import DeliveryRefused, TargetUnavailable
from xbus.consumers.sinks.base import Position, Sink
from xbus.consumers.sinks.postgres_columns import Column, columns_of
from xbus.core.envelope import Op
from xbus.core.errors import ConfigurationError

log = logging.getLogger(__name__)

POSITIONS = "_xbus_positions"
TOMBSTONES = "_xbus_deleted"
_META = [
    ("_xbus_event_id", "uuid NOT NULL"),
    ("_xbus_op", "text NOT NULL"),
    ("_xbus_event_time", "timestamptz NOT NULL"),
    ("_xbus_partition", "integer NOT NULL"),
    ("_xbus_offset", "bigint NOT NULL"),
    ("_xbus_applied_at", "timestamptz NOT NULL DEFAULT now()"),
]


@dataclass(frozen=True)
class _Statements:
    upsert: sql.Composed
    delete: sql.Composed
    columns: list[Column]


class PostgresSink(Sink):
    """Applies deliveries to tables in ``db_schema`` of the database at ``dsn``."""

    connector = "postgres"

    def __init__(self, dsn: str, db_schema: str) -> None:
        if db_schema.startswith("pg_"):
            raise ConfigurationError(
                f"database schema {db_schema!r}: PostgreSQL keeps names starting with pg_ for "
                "itself; choose another with --db-schema"
            )
        self.dsn = dsn
        self.db_schema = db_schema
        self._conn: psycopg.Connection[Any] | None = None
        self._prepared: dict[tuple[str, int], _Statements] = {}

    # -- connection and bookkeeping tables ---------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(self.dsn, connect_timeout=10, autocommit=True)
            except psycopg.OperationalError as exc:
                raise TargetUnavailable("database", f"cannot connect to PostgreSQL: {exc}") from exc
            with conn.transaction():
                s = sql.Identifier(self.db_schema)
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.{} (topic text NOT NULL, "
                        "partition integer NOT NULL, next_offset bigint NOT NULL, "
                        "PRIMARY KEY (topic, partition))"
                    ).format(s, sql.Identifier(POSITIONS))
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.{} (table_name text NOT NULL, "
                        "key text NOT NULL, event_time timestamptz NOT NULL, "
                        "kafka_offset bigint NOT NULL, PRIMARY KEY (table_name, key))"
                    ).format(s, sql.Identifier(TOMBSTONES))
                )
            self._conn = conn
            self._prepared.clear()
        return self._conn

    def positions(self, partitions: list[Position]) -> dict[Position, int]:
        """The next offset of each partition, as stored with the rows."""
        try:
            rows = (
                self._connection()
                .execute(
                    sql.SQL("SELECT topic, partition, next_offset FROM {}.{}").format(
                        sql.Identifier(self.db_schema), sql.Identifier(POSITIONS)
                    )
                )
                .fetchall()
            )
        except (TargetUnavailable, psycopg.OperationalError) as exc:
            # Starting from Kafka's commits instead could apply events twice: refuse to start.
            raise RuntimeError(f"cannot read the stored positions: {exc}") from exc
        wanted = set(partitions)
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    def _statements(self, d: Delivery) -> _Statements:
        found = self._prepared.get((d.dataset, d.schema_id))
        if found is not None:
            return found
        conn = self._connection()
        columns = columns_of(d.schema)
        table = sql.Identifier(self.db_schema, d.dataset)
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (_xbus_key text PRIMARY KEY, {})").format(
                    table,
                    sql.SQL(", ").join(sql.SQL(f"{n} {t}") for n, t in _META),
                )
            )
            for c in columns:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        table, sql.Identifier(c.name), sql.SQL(c.sql_type)
                    )
                )
        names = ["_xbus_key", *(c.name for c in columns), *(n for n, _ in _META[:-1])]
        updated = [n for n in names if n != "_xbus_key"] + ["_xbus_applied_at"]
        upsert = sql.SQL(
            "INSERT INTO {table} AS cur ({names}) VALUES ({values}) "
            "ON CONFLICT (_xbus_key) DO UPDATE SET {sets} "
            "WHERE (cur._xbus_event_time, cur._xbus_offset) "
            "< (EXCLUDED._xbus_event_time, EXCLUDED._xbus_offset)"
        ).format(
            table=table,
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sets=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(
                    sql.Identifier(n),
                    sql.SQL("now()")
                    if n == "_xbus_applied_at"
                    else sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)),
                )
                for n in updated
            ),
        )
        delete = sql.SQL(
            "DELETE FROM {} WHERE _xbus_key = %s AND (_xbus_event_time, _xbus_offset) < (%s, %s)"
        ).format(table)
        found = _Statements(upsert, delete, columns)
        self._prepared[(d.dataset, d.schema_id)] = found
        return found

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, batch: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """Apply the batch and store the positions in one transaction."""
        try:
            try:
                self._apply(batch, refuse=None)
                return []
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                # One bad row must not block the rest: apply row by row, refusing the bad ones.
                refused: list[tuple[Delivery, DeliveryRefused]] = []
                self._apply(batch, refuse=refused)
                return refused
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise TargetUnavailable("database", f"PostgreSQL: {exc}") from exc

    def _apply(
        self, batch: list[Delivery], refuse: list[tuple[Delivery, DeliveryRefused]] | None
    ) -> None:
        conn = self._connection()
        latest = _latest_per_key(batch)
        try:
            self._apply_in_transaction(conn, latest, batch, refuse)
        except BaseException:
            # DDL rolls back with the batch: statements prepared for tables made in it are void.
            self._prepared.clear()
            raise

    def _apply_in_transaction(
        self,
        conn: psycopg.Connection[Any],
        latest: list[Delivery],
        batch: list[Delivery],
        refuse: list[tuple[Delivery, DeliveryRefused]] | None,
    ) -> None:
        # autocommit connection: this block is one real transaction, committed at its end.
        with conn.transaction():
            tombstones = self._tombstones(conn, latest)
            for d in latest:
                gone = tombstones.get((d.dataset, d.key_text))
                if gone is not None and gone >= (d.event_time, d.offset):
                    continue  # deleted by a newer event already
                if refuse is None:
                    self._write(conn, d)
                    continue
                try:
                    with conn.transaction():
                        self._write(conn, d)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                    refuse.append((d, DeliveryRefused("database_refused", str(exc).strip())))
            self._store_positions(conn, batch)

    def _write(self, conn: psycopg.Connection[Any], d: Delivery) -> None:
        statements = self._statements(d)
        meta = [d.event_id, d.event["op"], d.event_time, d.partition, d.offset]
        if d.event["op"] == Op.DELETE:
            conn.execute(statements.delete, [d.key_text, d.event_time, d.offset])
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS t VALUES (%s, %s, %s, %s) ON CONFLICT (table_name, key) "
                    "DO UPDATE SET event_time = EXCLUDED.event_time, "
                    "kafka_offset = EXCLUDED.kafka_offset "
                    "WHERE (t.event_time, t.kafka_offset) < "
                    "(EXCLUDED.event_time, EXCLUDED.kafka_offset)"
                ).format(sql.Identifier(self.db_schema, TOMBSTONES)),
                [d.dataset, d.key_text, d.event_time, d.offset],
            )
            return
        record = d.event.get("after") or {}
        values = [c.adapt(record.get(c.name)) for c in statements.columns]
        conn.execute(statements.upsert, [d.key_text, *values, *meta])

    def _tombstones(
        self, conn: psycopg.Connection[Any], batch: Iterable[Delivery]
    ) -> dict[tuple[str, str], tuple[Any, int]]:
        wanted: dict[str, list[str]] = {}
        for d in batch:
            wanted.setdefault(d.dataset, []).append(d.key_text)
        found: dict[tuple[str, str], tuple[Any, int]] = {}
        for dataset, keys in wanted.items():
            rows = conn.execute(
                sql.SQL(
                    "SELECT key, event_time, kafka_offset FROM {} "
                    "WHERE table_name = %s AND key = ANY(%s)"
                ).format(sql.Identifier(self.db_schema, TOMBSTONES)),
                [dataset, keys],
            ).fetchall()
            found.update({(dataset, k): (t, o) for k, t, o in rows})
        return found

    def _store_positions(self, conn: psycopg.Connection[Any], batch: list[Delivery]) -> None:
        next_offsets: dict[Position, int] = {}
        for d in batch:
            position = (d.topic, d.partition)
            next_offsets[position] = max(next_offsets.get(position, 0), d.offset + 1)
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET next_offset = EXCLUDED.next_offset"
                ).format(sql.Identifier(self.db_schema, POSITIONS)),
                [(t, p, o) for (t, p), o in next_offsets.items()],
            )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        """Close the database connection."""
        self._drop_connection()


def _latest_per_key(batch: list[Delivery]) -> list[Delivery]:
    """Of several events for one row in a batch, only the newest matters."""
    latest: dict[tuple[str, str], Delivery] = {}
    for d in batch:
        key = (d.dataset, d.key_text)
        held = latest.get(key)
        if held is None or (held.event_time, held.offset) < (d.event_time, d.offset):
            latest[key] = d
    return list(latest.values())
