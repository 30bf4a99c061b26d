"""``xbus cdc check`` on databases that lack what change data capture needs: it names each
missing prerequisite and the statement that mends it, and those statements do mend it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.components import run_xbus
from tests.support.department_database import DepartmentDatabase
from xbus.core.secret_files import read_secret, write_private
from xbus.deploy.postgres import LocalPostgres, PostgresConfig
from xbus.deploy.process import free_port
from xbus.producers.cdc.demo import CREATE_TABLE
from xbus.producers.cdc.settings import CdcSettings


def _check(tmp_path: Path, yaml: str) -> tuple[int, str]:
    path = tmp_path / "source.yaml"
    path.write_text(yaml)
    result = run_xbus(os.environ, "cdc", "check", str(path))
    return result.returncode, result.stdout + result.stderr


def test_check_names_each_missing_prerequisite_and_its_fix_mends_it(
    department_database: Callable[..., DepartmentDatabase], tmp_path: Path
) -> None:
    database = department_database(replication=False)
    with database.admin() as admin:
        # A table as a department's application would have made it: no replica identity, a
        # column named otherwise than the dataset's field, no publication, not readable.
        admin.execute(
            CREATE_TABLE.replace("party_b_name", "party_b_full_name").replace(
                "registration_no text PRIMARY KEY", "registration_no text NOT NULL"
            )
        )
    code, out = _check(tmp_path, database.source_yaml())
    assert code == 1, out
    assert "not ready civil_affairs.marriage_registration" in out
    assert f"the role {database.user} may not replicate" in out
    assert "public.marriage_registrations has REPLICA IDENTITY DEFAULT, not FULL" in out
    assert f"the role {database.user} may not read public.marriage_registrations" in out
    assert "has no column party_b_name (for party_b.name)" in out
    assert "no publication xbus_civil_affairs" in out
    assert "public.marriage_registrations has no primary key" in out
    # A well-kept server: only the database's own shortcomings are reported.
    assert "wal_level" not in out and "max_slot_wal_keep_size" not in out

    fixes = [line.split("fix: ", 1)[1] for line in out.splitlines() if "fix: " in line]
    statements = [f for f in fixes if re.match(r"(ALTER|GRANT|CREATE) ", f)]
    assert len(statements) == 5, fixes
    assert "ALTER TABLE public.marriage_registrations ADD PRIMARY KEY (registration_no)" in fixes
    with database.admin() as admin:
        admin.execute(
            "ALTER TABLE public.marriage_registrations RENAME party_b_full_name TO party_b_name"
        )
        for statement in statements:
            admin.execute(statement)  # type: ignore[arg-type]
    code, out = _check(tmp_path, database.source_yaml())
    assert code == 0, out
    assert "ready civil_affairs.marriage_registration (public.marriage_registrations)" in out


def test_check_names_a_publication_without_the_table_or_its_deletes(
    department_database: Callable[..., DepartmentDatabase], tmp_path: Path
) -> None:
    database = department_database()
    with database.admin() as admin:
        admin.execute(CREATE_TABLE)
        admin.execute("ALTER TABLE public.marriage_registrations REPLICA IDENTITY FULL")
        admin.execute(
            sql.SQL("GRANT SELECT ON public.marriage_registrations TO {}").format(
                sql.Identifier(database.user)
            )
        )
        admin.execute("CREATE TABLE other (id int)")
        admin.execute(
            "CREATE PUBLICATION xbus_civil_affairs FOR TABLE other "
            "WITH (publish = 'insert, update')"
        )
    code, out = _check(tmp_path, database.source_yaml())
    assert code == 1, out
    assert "the publication xbus_civil_affairs does not publish delete" in out
    assert (
        "the publication xbus_civil_affairs does not include public.marriage_registrations" in out
    )
    assert "ALTER PUBLICATION xbus_civil_affairs ADD TABLE public.marriage_registrations" in out


def test_check_names_a_server_without_logical_decoding_or_a_wal_limit(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="xbus-cdc-check-"))
    home.chmod(0o711)
    server = LocalPostgres(
        PostgresConfig(
            port=free_port(),
            data_dir=home / "data",
            run_dir=home / "run",
            log_dir=home,
            secrets_dir=home / "secrets",
            logical_replication=False,
        )
    )
    server.start()
    try:
        # Its bus role plays the replication user: it may log in, not replicate.
        password = read_secret(server.config.password_file("xbus"))
        secrets_dir = CdcSettings().cdc_secrets_dir
        write_private(secrets_dir / f"check-{server.config.port}.password", password)
        with psycopg.connect(server.dsn, password=password, autocommit=True) as owner:
            owner.execute(CREATE_TABLE)
        yaml = (
            "department: civil_affairs\ndataset: marriage_registration\n"
            f"database: {{host: 127.0.0.1, port: {server.config.port}, name: xbus, user: xbus, "
            f"password_file: check-{server.config.port}.password}}\n"
            "table: public.marriage_registrations\npublication: xbus_civil_affairs\n"
        )
        code, out = _check(tmp_path, yaml)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    assert code == 1, out
    assert "wal_level is replica, not logical" in out
    assert "set wal_level = logical in postgresql.conf and restart the server" in out
    assert "max_slot_wal_keep_size is unlimited" in out


def test_check_says_when_it_cannot_log_in(tmp_path: Path) -> None:
    write_private(CdcSettings().cdc_secrets_dir / "nobody.password", "wrong")
    yaml = (
        "department: civil_affairs\ndataset: marriage_registration\n"
        f"database: {{host: 127.0.0.1, port: {free_port()}, name: x, user: nobody, "
        "password_file: nobody.password}\n"
        "table: public.marriage_registrations\npublication: p\n"
    )
    code, out = _check(tmp_path, yaml)
    assert code == 1
    assert "cannot connect to nobody@127.0.0.1" in out


def test_check_refuses_a_password_file_with_a_line_break(
    department_database: Callable[..., DepartmentDatabase], tmp_path: Path
) -> None:
    database = department_database()
    secret = CdcSettings().cdc_secrets_dir / database.password_file
    secret.write_text(secret.read_text() + "\n")
    code, out = _check(tmp_path, database.source_yaml())
    assert code == 1
    assert "ends with a line break, which Kafka Connect would send as part of the password" in out
