"""The local PostgreSQL of the launcher, on the machine's real PostgreSQL programs: data kept
across restarts, a clean stop that leaves no server process, clear refusals, and no way in
without a password."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from xbus.core.secret_files import read_secret, write_private
from xbus.deploy.errors import LauncherError
from xbus.deploy.postgres import (
    SUPERUSER,
    LocalPostgres,
    PostgresConfig,
    _server_user,
    find_bindir,
)
from xbus.deploy.process import credentials_of, free_port


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh folder for the server's data. Not pytest's tmp_path: when the tests run as
    root, the server runs as the ``postgres`` user, who cannot enter pytest's 0700 folders."""
    try:
        find_bindir()
    except LauncherError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(error))
        pytest.skip(str(error))
    path = Path(tempfile.mkdtemp(prefix="xbus-postgres-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(home: Path, **overrides: object) -> PostgresConfig:
    values: dict[str, object] = {
        "port": free_port(),
        "data_dir": home / "data",
        "run_dir": home / "run",
        "log_dir": home,
        "secrets_dir": home / "secrets",
    }
    values.update(overrides)
    return PostgresConfig(**values)  # type: ignore[arg-type]


def _connect(postgres: LocalPostgres) -> psycopg.Connection[tuple[object, ...]]:
    """A connection as the bus's role, its password from the stack's pgpass file."""
    return psycopg.connect(postgres.dsn, passfile=str(postgres.config.pgpass_file))


def _refused_without_password(postgres: LocalPostgres, role: str, host: str) -> str:
    """The error a connection as ``role`` without a password gets (fails if it gets in)."""
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            host=host,
            port=postgres.config.port,
            user=role,
            dbname="postgres",
            passfile="/nonexistent",
            connect_timeout=5,
        ).close()
    return str(refused.value)


def _processes_of(pid: int) -> set[int]:
    """``pid`` and every process started under it."""
    parents: dict[int, int] = {}
    for proc_stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = proc_stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(proc_stat.parent.name)] = int(fields[1])
    found = {pid}
    grew = True
    while grew:
        children = {child for child, parent in parents.items() if parent in found}
        grew = not children <= found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_row_written_before_a_stop_is_there_after_the_next_start(home: Path) -> None:
    config = _config(home)
    postgres = LocalPostgres(config)
    postgres.start()
    try:
        assert postgres.dsn == f"postgresql://xbus@127.0.0.1:{config.port}/xbus"
        with _connect(postgres) as connection:
            connection.execute("CREATE TABLE kept (note text)")
            connection.execute("INSERT INTO kept VALUES ('before the restart')")
    finally:
        postgres.stop()

    again = LocalPostgres(config)
    again.start()
    try:
        with _connect(again) as connection:
            rows = connection.execute("SELECT note FROM kept").fetchall()
            fsync = connection.execute("SHOW fsync").fetchone()
    finally:
        again.stop()
    assert rows == [("before the restart",)]
    assert fsync == ("on",)


def test_stop_ends_the_server_and_its_processes_even_with_a_client_connected(
    home: Path,
) -> None:
    postgres = LocalPostgres(_config(home))
    postgres.start()
    assert postgres.process is not None and postgres.process.process is not None
    server = _processes_of(postgres.process.process.pid)
    assert len(server) > 1  # the postmaster and its background workers
    client = _connect(postgres)
    try:
        started = time.monotonic()
        postgres.stop()
        took = time.monotonic() - started
    finally:
        client.close()
    assert [pid for pid in server if _alive(pid)] == []
    assert took < 15, f"stopping with a client connected took {took:.0f}s"
    assert list((home / "run").glob("*.pid")) == []


def test_a_taken_port_is_reported_and_nothing_starts(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        postgres = LocalPostgres(_config(home, port=port))
        with pytest.raises(
            LauncherError, match=f"port {port} .* already in use.*XBUS_STACK_POSTGRES_PORT"
        ):
            postgres.start()
    assert postgres.process is None or not postgres.process.running


def test_a_data_dir_that_is_not_postgresqls_is_refused_and_left_untouched(home: Path) -> None:
    data = home / "data"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    with pytest.raises(LauncherError, match="no PG_VERSION: it is not a PostgreSQL data dir"):
        LocalPostgres(_config(home)).start()
    assert [p.name for p in data.iterdir()] == ["notes.txt"]
    assert (data / "notes.txt").read_text() == "mine"


def test_nobody_gets_in_without_a_password_and_the_password_file_lets_the_bus_in(
    home: Path,
) -> None:
    config = _config(home)
    postgres = LocalPostgres(config)
    postgres.start()
    try:
        for role in ("xbus", SUPERUSER):
            for host in ("127.0.0.1", str(home / "run" / "postgres")):  # TCP, the socket
                error = _refused_without_password(postgres, role, host)
                assert "no password supplied" in error, (role, host, error)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(postgres.dsn, password="guessed", passfile="/nonexistent").close()
        with _connect(postgres) as connection:
            assert connection.execute("SELECT current_user").fetchone() == ("xbus",)
    finally:
        postgres.stop()

    password = read_secret(config.password_file("xbus"))
    assert "password" not in conninfo_to_dict(postgres.dsn)
    assert password not in postgres.dsn
    assert config.client_env() == {
        "XBUS_POSTGRES_DSN": postgres.dsn,
        "PGPASSFILE": str(config.pgpass_file),
    }
    folder = home / "secrets" / "postgres"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert files == {"xbus.password": 0o600, "postgres.password": 0o600, "pgpass": 0o600}
    # Only SCRAM verifiers reach the server: no password in its log or its files.
    superuser_password = read_secret(config.password_file(SUPERUSER))
    for path in home.rglob("*"):
        if path.is_file() and folder not in path.parents:
            data = path.read_bytes()
            assert password.encode() not in data, path
            assert superuser_password.encode() not in data, path


def test_a_data_dir_made_with_trust_by_an_older_launcher_is_converted_at_start(
    home: Path,
) -> None:
    data = home / "data"
    data.mkdir(mode=0o700)
    user = _server_user()
    if user:
        shutil.chown(data, user, user)
    subprocess.run(
        [str(find_bindir() / "initdb"), "-D", str(data), "--username=postgres", "--auth=trust"],
        check=True,
        capture_output=True,
        cwd=home,
        **credentials_of(user),
    )
    postgres = LocalPostgres(_config(home))
    postgres.start()
    try:
        for role in ("xbus", SUPERUSER):
            assert "no password supplied" in _refused_without_password(postgres, role, "127.0.0.1")
        with _connect(postgres) as connection:
            assert connection.execute("SELECT current_user").fetchone() == ("xbus",)
    finally:
        postgres.stop()
    assert "trust" not in (data / "pg_hba.conf").read_text()


def test_a_new_password_in_the_roles_file_is_in_force_after_a_restart(home: Path) -> None:
    config = _config(home)
    postgres = LocalPostgres(config)
    postgres.start()
    postgres.stop()
    old = read_secret(config.password_file("xbus"))
    write_private(config.password_file("xbus"), "a-new-password-for-the-bus")
    postgres.start()
    try:
        with _connect(postgres) as connection:
            assert connection.execute("SELECT current_user").fetchone() == ("xbus",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(postgres.dsn, password=old, passfile="/nonexistent").close()
    finally:
        postgres.stop()
