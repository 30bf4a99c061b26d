"""The PostgreSQL sink as a real connector process, against the real broker, registry and
PostgreSQL: typed tables, upserts and deletes by key, no roll-back by late or repeated
events, and an exact table after the connector is killed again and again."""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Bus
from tests.support.components import component, wait_for
from tests.support.delivery_feed import DeliveryFeed, licence
from tests.support.kafka_reading import end_offsets
from xbus.core.envelope import Op

pytestmark = pytest.mark.broker


def _subscriber() -> str:
    return f"table_{uuid.uuid4().hex[:8]}"


def _connector(bus: Bus, log_dir: Path, name: str, subscriber: str, dsn: str) -> Any:
    """The PostgreSQL connector of ``subscriber`` as a real process (``xbus run ...``)."""
    return component(
        bus,
        log_dir,
        name,
        "connector",
        "postgres",
        "--subscriber",
        subscriber,
        "--dsn",
        dsn,
        "--metrics-port",
        "0",
    )


def _applied(dsn: str, subscriber: str) -> int:
    """How many events the sink has stored positions for (sum of next offsets)."""
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(
                f'SELECT coalesce(sum(next_offset), 0) FROM "{subscriber}"._xbus_positions'
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def _rows(dsn: str, subscriber: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM "{subscriber}".business_licence')
        return {r["_xbus_key"]: r for r in cur.fetchall()}


def _same_record(row: dict[str, Any], record: dict[str, Any]) -> bool:
    return all(row[name] == value for name, value in record.items())


def test_a_table_with_typed_columns_follows_upserts_and_deletes_and_never_rolls_back(
    bus: Bus, postgres_dsn: str, tmp_path: Path
) -> None:
    subscriber = _subscriber()
    feed = DeliveryFeed(bus.settings, subscriber)
    t = 1_700_000_000_000
    feed.send("a", Op.CREATE, licence(1, 0), ts_ms=t)
    feed.send("a", Op.UPDATE, licence(1, 2), licence(1, 0), ts_ms=t + 20)
    feed.send("a", Op.UPDATE, licence(1, 1), licence(1, 0), ts_ms=t + 10)  # late: ignored
    feed.send("b", Op.CREATE, licence(2, 0), ts_ms=t)
    feed.send("b", Op.DELETE, None, licence(2, 0), ts_ms=t + 30)
    feed.send("b", Op.UPDATE, licence(2, 5), licence(2, 0), ts_ms=t + 25)  # late: stays deleted
    feed.send("c", Op.SNAPSHOT, licence(3, 0), ts_ms=t)
    feed.send("c", Op.DELETE, None, licence(3, 0), ts_ms=t + 30)
    feed.send("c", Op.CREATE, licence(3, 7), ts_ms=t + 40)  # created again after its delete
    feed.flush()
    with _connector(bus, tmp_path, "pg", subscriber, postgres_dsn):
        wait_for(lambda: _applied(postgres_dsn, subscriber) >= 9, 60, "the sink to apply the feed")
    rows = _rows(postgres_dsn, subscriber)
    assert set(rows) == {"a", "c"}
    assert _same_record(rows["a"], licence(1, 2))
    assert _same_record(rows["c"], licence(3, 7))
    assert rows["a"]["_xbus_op"] == "UPDATE"
    with psycopg.connect(postgres_dsn) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'business_licence'",
                [subscriber],
            ).fetchall()
        )
    assert types["registered_capital"] == "numeric"
    assert types["issued_on"] == "date"
    assert types["employees"] == "integer"
    assert types["_xbus_event_time"] == "timestamp with time zone"


def test_killed_again_and_again_while_50k_events_flow_the_table_ends_exactly_right(
    bus: Bus, postgres_dsn: str, tmp_path: Path
) -> None:
    subscriber = _subscriber()
    feed = DeliveryFeed(bus.settings, subscriber)
    rng = random.Random(5)
    total, keys = 50_000, 4_000
    expected: dict[str, dict[str, Any]] = {}
    latest_ts: dict[str, int] = {}
    t0 = 1_700_000_000_000

    def publish() -> None:
        for i in range(total):
            key = f"k{rng.randrange(keys)}"
            ts = t0 + i
            if key in expected and rng.random() < 0.01:
                # A late event: older than what the key holds, must not be applied.
                feed.send(key, Op.UPDATE, licence(i, 99), expected[key], ts_ms=latest_ts[key] - 5)
            elif key not in expected:
                expected[key] = licence(int(key[1:]), i)
                latest_ts[key] = ts
                feed.send(key, Op.CREATE, expected[key], ts_ms=ts)
            elif rng.random() < 0.2:
                feed.send(key, Op.DELETE, None, expected.pop(key), ts_ms=ts)
                latest_ts[key] = ts
            else:
                before, expected[key] = expected[key], licence(int(key[1:]), i)
                latest_ts[key] = ts
                feed.send(key, Op.UPDATE, expected[key], before, ts_ms=ts)
        feed.flush()

    publisher = threading.Thread(target=publish)
    publisher.start()
    kills, progress = 0, 0
    try:
        while kills < 5:
            with _connector(bus, tmp_path, f"pg-{kills}", subscriber, postgres_dsn) as process:
                wait_for(
                    lambda p=progress: _applied(postgres_dsn, subscriber) > p + 2000,  # type: ignore[misc]
                    120,
                    "the sink to make progress",
                )
                process.kill()  # SIGKILL: no clean shutdown, a transaction may be cut anywhere
                process.wait()
            kills += 1
            progress = _applied(postgres_dsn, subscriber)
    finally:
        publisher.join()
    assert sum(end_offsets(bus.settings, feed.topic).values()) == total
    with _connector(bus, tmp_path, "pg-last", subscriber, postgres_dsn):
        wait_for(lambda: _applied(postgres_dsn, subscriber) >= total, 300, "all 50k events")
    rows = _rows(postgres_dsn, subscriber)
    assert kills == 5
    assert set(rows) == set(expected), "every live key present, every deleted key absent"
    wrong = [k for k, record in expected.items() if not _same_record(rows[k], record)]
    assert not wrong, f"{len(wrong)} rows differ from their latest state, e.g. {wrong[:3]}"
    assert _applied(postgres_dsn, subscriber) == total
