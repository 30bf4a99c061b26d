"""The local PostgreSQL of the launcher, on the machine's real PostgreSQL programs: data kept
across restarts, a clean stop that leaves no server process, and clear refusals."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from xbus.deploy.errors import LauncherError
from xbus.deploy.postgres import LocalPostgres, PostgresConfig, find_bindir
from xbus.deploy.process import free_port


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
    }
    values.update(overrides)
    return PostgresConfig(**values)  # type: ignore[arg-type]


def _processes_of(pid: int) -> set[int]:
    """``pid`` and every process started under it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
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
        with psycopg.connect(postgres.dsn) as connection:
            connection.execute("CREATE TABLE kept (note text)")
            connection.execute("INSERT INTO kept VALUES ('before the restart')")
    finally:
        postgres.stop()

    again = LocalPostgres(config)
    again.start()
    try:
        with psycopg.connect(again.dsn) as connection:
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
    client = psycopg.connect(postgres.dsn)
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
