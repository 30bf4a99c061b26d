"""Where the console keeps what it knows: PostgreSQL, schema ``console``.

PostgreSQL rather than a compacted topic: the stack already runs it; a request's step and its
new state commit together or not at all (a compacted topic keeps one record per key and has
no transaction across two keys that a reader can rely on); pages list requests by state,
party and deadline, which a database answers and a topic would have to be read whole for;
and the steps are kept in full, append-only (a trigger refuses to change or delete one), where
compaction would keep only each key's last record. What is *enforced* stays on the grants
topic: the console writes signed grants there like ``xbus grants apply``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from xbus.console.accounts import (
    DECOY_HASH,
    Account,
    Role,
    check_account,
    hash_password,
    password_matches,
)
from xbus.console.errors import ConsoleError, NotFound
from xbus.console.sharing import (
    Action,
    FieldRequest,
    SharingRequest,
    State,
    Step,
    Terms,
)

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS console;
CREATE TABLE IF NOT EXISTS console.accounts (
    name text PRIMARY KEY,
    role text NOT NULL,
    party text,
    language text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS console.sessions (
    token_hash bytea PRIMARY KEY,
    account text NOT NULL REFERENCES console.accounts ON DELETE CASCADE,
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS console.requests (
    number bigserial PRIMARY KEY,
    subscriber text NOT NULL,
    dataset text NOT NULL,
    sharing text NOT NULL,
    purpose text NOT NULL,
    scenario text NOT NULL,
    legal_basis text NOT NULL,
    asked jsonb NOT NULL,
    granted jsonb,
    state text NOT NULL,
    filed_at timestamptz NOT NULL,
    filed_by text NOT NULL,
    deadline timestamptz,
    escalated boolean NOT NULL DEFAULT false,
    grant_id text,
    grant_version integer,
    valid_until timestamptz,
    renews bigint REFERENCES console.requests
);
CREATE INDEX IF NOT EXISTS requests_by_state ON console.requests (state, deadline);
CREATE TABLE IF NOT EXISTS console.steps (
    request bigint NOT NULL REFERENCES console.requests,
    seq bigserial,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    from_state text,
    to_state text NOT NULL,
    reason text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (request, seq)
);
CREATE OR REPLACE FUNCTION console.steps_are_kept() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'console.steps is append-only: a step is never changed or deleted';
END $$;
CREATE OR REPLACE TRIGGER steps_are_kept BEFORE UPDATE OR DELETE ON console.steps
    FOR EACH ROW EXECUTE FUNCTION console.steps_are_kept();
"""

SESSION_HOURS = 8


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def terms_json(terms: Terms) -> dict[str, Any]:
    return asdict(terms)


def terms_from(value: dict[str, Any]) -> Terms:
    return Terms(
        fields=tuple(FieldRequest(**f) for f in value["fields"]),
        rows=value.get("rows"),
        days=int(value["days"]),
        operations=tuple(value.get("operations") or ()),
    )


class ConsoleStore:
    """The console's tables, reached through a small pool of connections."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 8, passfile: Path | None = None
    ) -> None:
        # The password comes from libpq's password file (PGPASSFILE, or ``passfile``),
        # never from the DSN.
        extra: dict[str, Any] = {"passfile": str(passfile)} if passfile else {}
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max(max_size, min_size),
            kwargs={"row_factory": dict_row, **extra},
            open=False,
        )

    def open(self) -> None:
        """Connect, and make the tables if they are not there yet."""
        self._pool.open(wait=True, timeout=30)
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('xbus console schema'))")
            conn.execute(SCHEMA)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    # Accounts

    def add_account(self, account: Account, password: str, *, replace: bool = False) -> None:
        """Store ``account`` with the hash of ``password``; ``ConsoleError`` if the name is
        taken (unless ``replace``) or the account is not valid."""
        check_account(account.name, account.role, account.party, account.language)
        hashed = hash_password(password)
        with self.transaction() as conn:
            conflict = (
                "DO UPDATE SET role = excluded.role, party = excluded.party, "
                "language = excluded.language, password_hash = excluded.password_hash"
                if replace
                else "DO NOTHING"
            )
            done = conn.execute(
                "INSERT INTO console.accounts (name, role, party, language, password_hash) "
                f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) {conflict}",
                (account.name, account.role.value, account.party, account.language, hashed),
            ).rowcount
            if not done:
                raise ConsoleError(f"an account named {account.name} exists already")
            if replace:
                conn.execute("DELETE FROM console.sessions WHERE account = %s", (account.name,))

    def accounts(self) -> list[Account]:
        with self.transaction() as conn:
            rows = conn.execute("SELECT * FROM console.accounts ORDER BY name").fetchall()
        return [_account(r) for r in rows]

    def remove_account(self, name: str) -> bool:
        with self.transaction() as conn:
            return bool(
                conn.execute("DELETE FROM console.accounts WHERE name = %s", (name,)).rowcount
            )

    def set_language(self, name: str, language: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE console.accounts SET language = %s WHERE name = %s", (language, name)
            )

    def log_in(self, name: str, password: str) -> tuple[Account, str, str] | None:
        """A new session for ``name`` if ``password`` is its password: the account, the
        session token (for the cookie; only its hash is stored) and the session's CSRF
        token. ``None`` otherwise, after as long a check either way."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM console.accounts WHERE name = %s", (name,)).fetchone()
        if row is None:
            password_matches(DECOY_HASH, password)
            return None
        if not password_matches(row["password_hash"], password):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO console.sessions (token_hash, account, csrf, expires_at) "
                "VALUES (%s, %s, %s, now() + make_interval(hours => %s))",
                (_token_hash(token), name, csrf, SESSION_HOURS),
            )
            conn.execute("DELETE FROM console.sessions WHERE expires_at < now()")
        return _account(row), token, csrf

    def session(self, token: str) -> tuple[Account, str] | None:
        """The account and CSRF token of a live session, or ``None``."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT a.*, s.csrf FROM console.sessions s JOIN console.accounts a "
                "ON a.name = s.account WHERE s.token_hash = %s AND s.expires_at > now()",
                (_token_hash(token),),
            ).fetchone()
        return None if row is None else (_account(row), row["csrf"])

    def log_out(self, token: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM console.sessions WHERE token_hash = %s", (_token_hash(token),)
            )

    # Requests

    def file_request(self, request: SharingRequest, step: Step) -> int:
        """Store a new request and its first step; its number."""
        with self.transaction() as conn:
            row = conn.execute(
                "INSERT INTO console.requests (subscriber, dataset, sharing, purpose, scenario, "
                "legal_basis, asked, state, filed_at, filed_by, deadline, renews, grant_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING number",
                (
                    request.subscriber,
                    request.dataset,
                    request.sharing,
                    request.purpose,
                    request.scenario,
                    request.legal_basis,
                    Jsonb(terms_json(request.asked)),
                    request.state.value,
                    request.filed_at,
                    request.filed_by,
                    request.deadline,
                    request.renews,
                    request.grant_id,
                ),
            ).fetchone()
            assert row is not None
            number = int(row["number"])
            _insert_step(conn, number, step)
        return number

    def request(self, number: int, *, with_steps: bool = True) -> SharingRequest:
        with self.transaction() as conn:
            return _load(conn, number, with_steps=with_steps, lock=False)

    def requests(
        self,
        *,
        subscriber: str | None = None,
        department: str | None = None,
        states: tuple[State, ...] = (),
    ) -> list[SharingRequest]:
        """Requests, newest first: of one subscriber, on one department's datasets, in some
        states (each filter optional)."""
        where: list[str] = ["true"]
        args: list[object] = []
        if subscriber is not None:
            where.append("subscriber = %s")
            args.append(subscriber)
        if department is not None:
            where.append("split_part(dataset, '.', 1) = %s")
            args.append(department)
        if states:
            where.append("state = ANY(%s)")
            args.append([s.value for s in states])
        with self.transaction() as conn:
            rows = conn.execute(
                f"SELECT * FROM console.requests WHERE {' AND '.join(where)} ORDER BY number DESC",
                args,
            ).fetchall()
        return [_request(r) for r in rows]

    def change(
        self, number: int, decide: Callable[[SharingRequest], tuple[dict[str, Any], Step]]
    ) -> SharingRequest:
        """Take one step on request ``number`` atomically: ``decide`` sees the request as it
        stands (locked) and returns the columns to change and the step to record, or raises
        to change nothing. The request as changed."""
        with self.transaction() as conn:
            current = _load(conn, number, with_steps=True, lock=True)
            updates, step = decide(current)
            updates = {**updates, "state": step.to_state.value}
            for column, value in list(updates.items()):
                if isinstance(value, dict):
                    updates[column] = Jsonb(value)
            assignments = ", ".join(f"{column} = %s" for column in updates)
            conn.execute(
                f"UPDATE console.requests SET {assignments} WHERE number = %s",
                [*updates.values(), number],
            )
            _insert_step(conn, number, step)
            return _load(conn, number, with_steps=True, lock=False)

    def overdue(self, now: dt.datetime) -> list[int]:
        """Requests past their deadline that were not escalated yet."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT number FROM console.requests WHERE deadline < %s AND NOT escalated "
                "AND state = ANY(%s) ORDER BY number",
                (now, [State.PENDING_REVIEW.value, State.PENDING_OWNER.value]),
            ).fetchall()
        return [int(r["number"]) for r in rows]

    def lapsed(self, now: dt.datetime) -> list[int]:
        """Applied requests whose grant's validity has ended."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT number FROM console.requests WHERE state = %s AND valid_until <= %s",
                (State.APPLIED.value, now),
            ).fetchall()
        return [int(r["number"]) for r in rows]


def _account(row: dict[str, Any]) -> Account:
    return Account(row["name"], Role(row["role"]), row["party"], row["language"])


def _request(row: dict[str, Any], steps: list[Step] | None = None) -> SharingRequest:
    return SharingRequest(
        number=int(row["number"]),
        subscriber=row["subscriber"],
        dataset=row["dataset"],
        sharing=row["sharing"],
        purpose=row["purpose"],
        scenario=row["scenario"],
        legal_basis=row["legal_basis"],
        asked=terms_from(row["asked"]),
        granted=terms_from(row["granted"]) if row["granted"] else None,
        state=State(row["state"]),
        filed_at=row["filed_at"],
        filed_by=row["filed_by"],
        deadline=row["deadline"],
        escalated=row["escalated"],
        grant_id=row["grant_id"],
        grant_version=row["grant_version"],
        valid_until=row["valid_until"],
        renews=row["renews"],
        steps=steps or [],
    )


def _load(
    conn: psycopg.Connection[Any], number: int, *, with_steps: bool, lock: bool
) -> SharingRequest:
    row = conn.execute(
        "SELECT * FROM console.requests WHERE number = %s" + (" FOR UPDATE" if lock else ""),
        (number,),
    ).fetchone()
    if row is None:
        raise NotFound(f"there is no request {number}")
    steps: list[Step] = []
    if with_steps:
        for s in conn.execute(
            "SELECT * FROM console.steps WHERE request = %s ORDER BY seq", (number,)
        ).fetchall():
            steps.append(
                Step(
                    at=s["at"],
                    actor=s["actor"],
                    role=s["role"],
                    action=Action(s["action"]),
                    from_state=State(s["from_state"]) if s["from_state"] else None,
                    to_state=State(s["to_state"]),
                    reason=s["reason"],
                    details=s["details"],
                )
            )
    return _request(row, steps)


def _insert_step(conn: psycopg.Connection[Any], number: int, step: Step) -> None:
    conn.execute(
        "INSERT INTO console.steps (request, at, actor, role, action, from_state, to_state, "
        "reason, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            number,
            step.at,
            step.actor,
            step.role,
            str(step.action),
            step.from_state.value if step.from_state else None,
            step.to_state.value,
            step.reason,
            Jsonb(json.loads(json.dumps(step.details, default=str))),
        ),
    )
