"""The demo's civil affairs registry office: its marriage registrations live in its own
PostgreSQL database, written with plain SQL, and reach the bus only through change data
capture (``cdc/civil_affairs/marriage_registration.yaml``)."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

from xbus.producers.demodata import DemoData

TABLE = "public.marriage_registrations"
PUBLICATION = "xbus_civil_affairs"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.marriage_registrations (
    registration_no text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('MARRIAGE', 'DIVORCE', 'REISSUE')),
    party_a_name text NOT NULL,
    party_a_id_number text NOT NULL,
    party_a_birth_date date NOT NULL,
    party_a_household_district_code text,
    party_b_name text NOT NULL,
    party_b_id_number text NOT NULL,
    party_b_birth_date date NOT NULL,
    party_b_household_district_code text,
    registered_on date NOT NULL,
    office_code text NOT NULL,
    district_code text NOT NULL,
    -- The clerk's own note: no dataset field maps it, so it never leaves the database.
    clerk_note text
)
"""

COLUMNS = (
    "registration_no",
    "kind",
    "party_a_name",
    "party_a_id_number",
    "party_a_birth_date",
    "party_a_household_district_code",
    "party_b_name",
    "party_b_id_number",
    "party_b_birth_date",
    "party_b_household_district_code",
    "registered_on",
    "office_code",
    "district_code",
    "clerk_note",
)

INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def prepare_table(connection: psycopg.Connection[Any], replication_user: str) -> None:
    """Make the table ready for capture: replica identity full, a publication of it, and
    the replication user allowed to read it (what ``xbus cdc check`` asks for)."""
    connection.execute(CREATE_TABLE)
    connection.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")
    exists = connection.execute(
        "SELECT 1 FROM pg_publication WHERE pubname = %s", (PUBLICATION,)
    ).fetchone()
    if exists is None:
        connection.execute(
            f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE} "
            "WITH (publish = 'insert, update, delete')"
        )
    connection.execute(f'GRANT SELECT ON {TABLE} TO "{replication_user}"')


def row(registration: dict[str, Any], note: str | None = None) -> tuple[Any, ...]:
    """A generated registration (``DemoData.marriage_registration``) as the table's row."""
    a, b = registration["party_a"], registration["party_b"]
    return (
        registration["registration_no"],
        registration["kind"],
        a["name"],
        a["id_number"],
        a["birth_date"],
        a["household_district_code"],
        b["name"],
        b["id_number"],
        b["birth_date"],
        b["household_district_code"],
        registration["registered_on"],
        registration["office_code"],
        registration["district_code"],
        note,
    )


def run_registry_office(
    conninfo: str,
    stop: threading.Event,
    *,
    rate: float = 0.5,
    seed: int | None = None,
    report: Callable[[str], None] | None = None,
) -> int:
    """Register marriages ``rate`` times a second with plain SQL, now and then reissue a
    certificate (an update) or strike a registration entered in error (a delete), until
    ``stop`` is set; return how many statements were committed. ``report`` hears of each."""
    tell = report or (lambda _: None)
    data = DemoData(seed)
    chance = random.Random(seed)
    recent: deque[str] = deque(maxlen=50)
    done = 0
    with psycopg.connect(conninfo, autocommit=True) as connection:
        while not stop.wait(1 / rate):
            draw = chance.random()
            if recent and draw < 0.1:
                number = chance.choice(recent)
                connection.execute(
                    f"UPDATE {TABLE} SET kind = 'REISSUE' WHERE registration_no = %s", (number,)
                )
                tell(f"reissued certificate {number} (SQL UPDATE)")
            elif recent and draw < 0.15:
                number = recent.pop()
                connection.execute(f"DELETE FROM {TABLE} WHERE registration_no = %s", (number,))
                tell(f"struck registration {number} entered in error (SQL DELETE)")
            else:
                registration = data.marriage_registration()
                connection.execute(
                    INSERT + " ON CONFLICT (registration_no) DO NOTHING",
                    row(registration, note="窗口受理"),
                )
                recent.append(registration["registration_no"])
                tell(f"registered marriage {registration['registration_no']} (SQL INSERT)")
            done += 1
    return done
