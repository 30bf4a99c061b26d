"""A department's own database on the stack's PostgreSQL, for change data capture: made as
the server's superuser, with a replication user whose password is in the CDC secrets
folder, and removed with its replication slots."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xbus.core.secret_files import write_private


def superuser_conninfo(dsn: str) -> str | None:
    """The superuser's connection string on the server of ``dsn`` (its password from the
    stack's secrets, ``XBUS_SECRETS_DIR``); None if that password is not there."""
    password_file = Path(os.environ.get("XBUS_SECRETS_DIR", "")) / "postgres" / "postgres.password"
    if not password_file.is_file():
        return None
    params = conninfo_to_dict(dsn)
    return make_conninfo(
        host=params.get("host"),
        port=params.get("port"),
        dbname="postgres",
        user="postgres",
        password=password_file.read_text().strip(),
    )


@dataclass(frozen=True)
class DepartmentDatabase:
    """A database of its own on the stack's server, with a replication user."""

    name: str
    user: str
    password_file: str
    host: str
    port: int
    superuser: str

    def admin(self) -> psycopg.Connection:
        """A connection to the database as the superuser (autocommit)."""
        params = conninfo_to_dict(self.superuser) | {"dbname": self.name}
        return psycopg.connect(make_conninfo(**params), autocommit=True)  # type: ignore[arg-type]

    def source_yaml(self, publication: str = "xbus_civil_affairs") -> str:
        """A CDC source file feeding civil_affairs.marriage_registration from this database's
        ``public.marriage_registrations``."""
        return (
            "department: civil_affairs\n"
            "dataset: marriage_registration\n"
            "database:\n"
            f"  host: {self.host}\n"
            f"  port: {self.port}\n"
            f"  name: {self.name}\n"
            f"  user: {self.user}\n"
            f"  password_file: {self.password_file}\n"
            "table: public.marriage_registrations\n"
            f"publication: {publication}\n"
        )


def make_department_database(
    superuser: str, secrets_dir: Path, *, replication: bool = True
) -> DepartmentDatabase:
    """A new database and a login role (``replication``: that may replicate), its password
    written alone (no line break) to ``secrets_dir``."""
    tag = secrets.token_hex(4)
    name, user = f"dept_{tag}", f"cdc_{tag}"
    password = secrets.token_urlsafe(24)
    write_private(secrets_dir / f"{user}.password", password)
    params = conninfo_to_dict(superuser)
    with psycopg.connect(superuser, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                sql.Identifier(user),
                sql.SQL("REPLICATION" if replication else "NOREPLICATION"),
                sql.Literal(password),
            )
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return DepartmentDatabase(
        name, user, f"{user}.password", str(params["host"]), int(params["port"]), superuser
    )


def drop_department_database(database: DepartmentDatabase, timeout: float = 30.0) -> None:
    """Drop the database, its replication slots (once no one reads them) and its role."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database.superuser, autocommit=True) as admin:
        while True:
            slots = admin.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                (database.name,),
            ).fetchall()
            if not slots:
                break
            for slot, pid in slots:
                if pid is not None:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    continue
                with contextlib.suppress(psycopg.errors.ObjectInUse):
                    admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            if time.monotonic() > deadline:
                raise RuntimeError(f"replication slots of {database.name} still in use: {slots}")
            time.sleep(0.2)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.name))
        )
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database.user)))
