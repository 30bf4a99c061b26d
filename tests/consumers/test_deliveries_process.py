"""``xbus run deliveries``: one process delivering each subscriber every way its delivery
file declares, against the real broker, registry, an HTTP endpoint, files and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Bus
from tests.support.components import component, wait_for
from tests.support.delivery_feed import DeliveryFeed, licence
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.envelope import Op

pytestmark = pytest.mark.broker


def test_each_subscriber_receives_every_way_its_file_declares(
    bus: Bus, postgres_dsn: str, tmp_path: Path
) -> None:
    web, table = f"web_{uuid.uuid4().hex[:6]}", f"tbl_{uuid.uuid4().hex[:6]}"
    web_feed, table_feed = DeliveryFeed(bus.settings, web), DeliveryFeed(bus.settings, table)
    for n in range(50):
        web_feed.send(f"k{n}", Op.CREATE, licence(n))
        table_feed.send(f"k{n % 10}", Op.CREATE if n < 10 else Op.UPDATE, licence(n % 10, n))
    web_feed.flush()
    table_feed.flush()
    out = tmp_path / "out"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / f"{web}.yaml").write_text(
        f"subscriber: {web}\ndeliveries:\n"
        "  - kind: webhook\n    url: URL\n    secret_env: WEB_SECRET\n"
        f"  - kind: file\n    dir: {out}\n"
    )
    (tmp_path / "d" / f"{table}.yaml").write_text(
        f"subscriber: {table}\ndeliveries:\n  - kind: postgres\n    dsn_env: TABLE_DSN\n"
    )
    with webhook_receiver(b"web-secret-of-at-least-32-bytes-for-hmac") as receiver:
        path = tmp_path / "d" / f"{web}.yaml"
        path.write_text(path.read_text().replace("URL", receiver.url))
        with component(
            bus,
            tmp_path,
            "deliveries",
            "deliveries",
            str(tmp_path / "d"),
            "--metrics-port",
            "0",
            env={
                "WEB_SECRET": "web-secret-of-at-least-32-bytes-for-hmac",
                "TABLE_DSN": postgres_dsn,
            },
        ):
            wait_for(lambda: len(receiver.processed) >= 50, 60, "the webhook deliveries")
            lines = out / web / "business_licence.jsonl"
            wait_for(
                lambda: lines.exists() and len(lines.read_text().splitlines()) >= 50,
                60,
                "the file deliveries",
            )

            def table_rows() -> list[tuple[str, str]] | None:
                try:
                    with psycopg.connect(postgres_dsn) as conn:
                        rows = conn.execute(
                            f'SELECT _xbus_key, name FROM "{table}".business_licence'
                        ).fetchall()
                except psycopg.errors.UndefinedTable:
                    return None
                return rows if len(rows) == 10 else None

            rows = wait_for(table_rows, 60, "the table")
    assert set(receiver.processed) == {e["event_id"] for e in web_feed.sent}
    assert {json.loads(x)["event_id"] for x in lines.read_text().splitlines()} == set(
        receiver.processed
    )
    assert sorted(k for k, _ in rows) == sorted(f"k{n}" for n in range(10))


def test_an_invalid_delivery_file_stops_before_anything_runs(bus: Bus, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("subscriber: x\ndeliveries:\n  - kind: webhook\n")
    with component(bus, tmp_path, "bad", "deliveries", str(bad)) as process:
        assert process.wait(30) == 1
    log = (tmp_path / "bad.log").read_text()
    assert f"{bad}:3: deliveries.0.url: Field required" in log
