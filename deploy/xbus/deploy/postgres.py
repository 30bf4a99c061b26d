"""A PostgreSQL server on loopback for the PostgreSQL sink and its tests, run from the
machine's own PostgreSQL programs (Debian's ``postgresql`` package, which ``make install``
adds when missing). The cluster is made once; later starts reuse its data.

Every connection, on loopback and on the socket, needs a password (SCRAM-SHA-256): anyone on
the machine could otherwise read the subscribers' tables, and as the superuser run programs
as the server's user (``COPY ... FROM PROGRAM``). The superuser's and the bus role's passwords
are generated into ``<secrets>/postgres/<role>.password`` (0600) and set at every start, so
the files are the truth (rotating one is writing or removing its file and starting again).
Clients get the bus role's password from libpq's password file ``<secrets>/postgres/pgpass``
(``PGPASSFILE``): the DSN never holds one, so it can be printed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from xbus.core.secret_files import password_file, read_secret, write_private
from xbus.deploy.errors import LauncherError
from xbus.deploy.process import ManagedProcess, check_port_free, credentials_of

log = logging.getLogger(__name__)

# Only the launcher connects as initdb's superuser, to make the bus's role and database.
SUPERUSER = "postgres"
# Every connection authenticates with a password; written at every start, so a data dir made
# by an older launcher with ``trust`` is converted when it is next started.
PG_HBA = """\
# Written by the xbus launcher at every start (xbus.deploy.postgres): a password for everyone.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
# Replication connections (change data capture reads a department's tables through them).
local   replication  all              scram-sha-256
host    replication  all  127.0.0.1/32  scram-sha-256
host    replication  all  ::1/128       scram-sha-256
"""
# What logical decoding needs (``PostgresConfig.logical_replication``).
_LOGICAL_REPLICATION = (
    "wal_level=logical",
    "max_slot_wal_keep_size=1GB",
    "max_replication_slots=10",
    "max_wal_senders=10",
)
# PostgreSQL refuses to run as root; a root supervisor runs it as this system user.
SERVER_USER = "postgres"
# Where that user's clusters go when it cannot reach the stack's own folder (a checkout in
# /root, or in a 0700 folder from mktemp): see ``cluster_folder_outside``.
SERVER_HOME = Path("/var/lib/xbus/postgres")
INSTALL_HINT = (
    "Install PostgreSQL's server (Debian/Ubuntu: `apt-get install postgresql`, which "
    "`make install` runs when it can)"
)


@dataclass
class PostgresConfig:
    """Where the server listens and keeps its data, and the role and database of the bus."""

    host: str = "127.0.0.1"
    port: int = 5433
    data_dir: Path = Path(".xbus/data/postgres/data")
    run_dir: Path = Path(".xbus/run")
    log_dir: Path = Path(".xbus/data/postgres")
    secrets_dir: Path = Path(".xbus/data/secrets")
    # Where the server's Unix socket goes (default: ``<run_dir>/postgres``).
    socket_dir: Path | None = None
    user: str = "xbus"
    database: str = "xbus"
    start_timeout: float = 60.0
    # Logical decoding, so that the stack's server can also play a department's database
    # for change data capture (docs/cdc.md); a slot no one reads keeps at most 1 GB of WAL.
    logical_replication: bool = True

    @property
    def dsn(self) -> str:
        """The URL clients connect with. No password: libpq reads it from ``pgpass_file``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{self.user}@{host}:{self.port}/{self.database}"

    def password_file(self, role: str) -> Path:
        """The file holding ``role``'s password (made on first use)."""
        return password_file(self.secrets_dir.resolve() / "postgres" / f"{role}.password")

    @property
    def pgpass_file(self) -> Path:
        """libpq's password file with the bus role's password (written by ``start``)."""
        return self.secrets_dir.resolve() / "postgres" / "pgpass"

    def client_env(self) -> dict[str, str]:
        """The settings with which a client reaches the bus's database as its role: the DSN,
        and the password by file (libpq's ``PGPASSFILE``)."""
        return {"XBUS_POSTGRES_DSN": self.dsn, "PGPASSFILE": str(self.pgpass_file)}


def find_bindir() -> Path:
    """The directory holding PostgreSQL's ``initdb`` and ``postgres``: ``pg_config --bindir``,
    else the newest ``/usr/lib/postgresql/<version>/bin``, else wherever ``initdb`` is on
    PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in ("initdb", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin"
    raise LauncherError(
        f"PostgreSQL's server programs (initdb and postgres) were not found in {looked} "
        f"or on PATH. {INSTALL_HINT}."
    )


def _version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())


class LocalPostgres:
    """Makes, starts and stops the local PostgreSQL server."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.process: ManagedProcess | None = None
        self._data_dir = config.data_dir.resolve()
        self._socket_dir = (config.socket_dir or config.run_dir / "postgres").resolve()
        self._pid_file = config.run_dir.resolve() / f"postgres-{config.port}.pid"

    @property
    def dsn(self) -> str:
        """``postgresql://<user>@<host>:<port>/<database>``, the bus's own role and database."""
        return self.config.dsn

    def start(self) -> None:
        """Make the cluster if there is none, start the server, wait until it accepts
        connections, and make the bus's role and database if missing."""
        c = self.config
        bindir = find_bindir()
        _check_loopback(c.host)
        user = _server_user()
        self.process = ManagedProcess(
            "PostgreSQL",
            [
                str(bindir / "postgres"),
                "-D",
                str(self._data_dir),
                "-k",
                str(self._socket_dir),
                "-h",
                c.host,
                "-p",
                str(c.port),
                # The sink's crash tests count on a committed row surviving a killed server.
                "-c",
                "fsync=on",
                *(
                    arg
                    for setting in (_LOGICAL_REPLICATION if c.logical_replication else ())
                    for arg in ("-c", setting)
                ),
            ],
            log_file=c.log_dir.resolve() / "postgresql.log",
            pid_file=self._pid_file,
            cwd=self._data_dir.parent,
            # SIGTERM is a smart shutdown, which waits for every client to disconnect.
            stop_signal=signal.SIGINT,
            user=user,
        )
        self.process.stop_leftover()
        check_port_free(c.host, c.port, "PostgreSQL", "XBUS_STACK_POSTGRES_PORT")
        for directory in (self._data_dir.parent, self._socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        _give(self._socket_dir, user)
        for directory in (self._data_dir.parent, self._socket_dir):
            _check_reachable(directory, user)
        self._initdb(bindir, user)
        self._require_passwords(bindir, user)
        self._write_pgpass()
        self.process.start()
        self.process.wait_until(
            self._accepts_connections, c.start_timeout, f"accepting connections on {c.dsn}"
        )
        try:
            self._create_database()
        except BaseException:
            self.stop()
            raise

    def _initdb(self, bindir: Path, user: str | None) -> None:
        """Make the cluster once, its superuser with a password and no connection without
        one; a data dir from an earlier run is reused (``_require_passwords`` secures it)."""
        data = self._data_dir
        pwfile = data.with_name(f"{data.name}.pwfile")
        # Left only if the launcher was killed during initdb: it holds a password.
        pwfile.unlink(missing_ok=True)
        if (data / "PG_VERSION").exists():
            return
        if data.exists() and any(data.iterdir()):
            raise LauncherError(
                f"{data} holds files but no PG_VERSION: it is not a PostgreSQL data dir. "
                "Remove it (its contents are lost) or choose another data dir."
            )
        # initdb works in a sibling renamed into place once complete: an interrupted initdb
        # never leaves a data dir that looks made.
        partial = data.with_name(f"{data.name}.initdb")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        _give(partial, user)
        # initdb reads the superuser's password from a file the server's user can read (the
        # secrets folder is ours only): a 0600 copy beside the data dir, removed at once.
        write_private(pwfile, read_secret(self.config.password_file(SUPERUSER)))
        try:
            _give(pwfile, user)
            result = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(partial),
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                capture_output=True,
                text=True,
                cwd=data.parent,
                **credentials_of(user),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise LauncherError(
                f"initdb could not make a PostgreSQL cluster in {data}:\n"
                f"{result.stdout}{result.stderr}"
            )
        if data.exists():
            data.rmdir()
        partial.rename(data)

    def _require_passwords(self, bindir: Path, user: str | None) -> None:
        """Before the server listens: give the superuser the password its file holds (in
        single-user mode, which takes no connections) and require a password of every
        connection (``PG_HBA``). A data dir made with ``trust`` is converted here."""
        hba = self._data_dir / "pg_hba.conf"
        written = hba.read_text(encoding="utf-8")
        if written != PG_HBA:
            if _trusts(written):
                log.warning(
                    "PostgreSQL in %s admitted connections without a password (trust); from "
                    "now on every connection needs one (docs/security.md, PostgreSQL)",
                    self._data_dir,
                )
            hba.write_text(PG_HBA, encoding="utf-8")
        verifier = scram_verifier(read_secret(self.config.password_file(SUPERUSER)))
        # Only the verifier reaches the server, never the password itself.
        result = subprocess.run(
            [str(bindir / "postgres"), "--single", "-D", str(self._data_dir), "postgres"],
            input=f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'\n",
            capture_output=True,
            text=True,
            cwd=self._data_dir.parent,
            **credentials_of(user),
        )
        if result.returncode != 0 or "ERROR" in result.stderr:
            raise LauncherError(
                f"PostgreSQL in single-user mode could not set the superuser's password in "
                f"{self._data_dir}:\n{result.stderr}"
            )

    def _write_pgpass(self) -> None:
        c = self.config
        password = read_secret(c.password_file(c.user))
        write_private(c.pgpass_file, f"{c.host}:{c.port}:{c.database}:{c.user}:{password}\n")

    def _admin_conninfo(self) -> str:
        c = self.config
        return make_conninfo(
            host=c.host,
            port=c.port,
            user=SUPERUSER,
            dbname="postgres",
            connect_timeout=2,
            password=read_secret(c.password_file(SUPERUSER)),
        )

    def _accepts_connections(self) -> bool:
        try:
            psycopg.connect(self._admin_conninfo()).close()
        except psycopg.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        """Make the bus's role and database if missing; give the role its file's password."""
        c = self.config
        verifier = scram_verifier(read_secret(c.password_file(c.user)))
        with psycopg.connect(self._admin_conninfo(), autocommit=True) as connection:
            role = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (c.user,))
            command = "ALTER" if role.fetchone() else "CREATE"
            connection.execute(
                sql.SQL(command + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(c.user), sql.Literal(verifier)
                )
            )
            database = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (c.database,)
            )
            if database.fetchone() is None:
                connection.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(c.database), sql.Identifier(c.user)
                    )
                )

    def department_database(
        self, name: str, owner_password_file: Path, replication_user: str, replication_file: Path
    ) -> str:
        """Make (if missing) a database playing a department's own server: owned by a login
        role of its name, and a role ``replication_user`` that may replicate (what change
        data capture reads as). Their passwords are the files' (made on first use; the
        replication one without a line break, as Kafka Connect reads it whole). Returns the
        owner's connection string, without its password."""
        c = self.config
        owner = scram_verifier(read_secret(password_file(owner_password_file)))
        replicator = scram_verifier(read_secret(password_file(replication_file)))
        with psycopg.connect(self._admin_conninfo(), autocommit=True) as connection:
            for role, verifier, extra in (
                (name, owner, ""),
                (replication_user, replicator, " REPLICATION"),
            ):
                exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                command = "ALTER" if exists.fetchone() else "CREATE"
                connection.execute(
                    sql.SQL(command + " ROLE {} LOGIN" + extra + " PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(verifier)
                    )
                )
            database = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if database.fetchone() is None:
                connection.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(name)
                    )
                )
        return make_conninfo(host=c.host, port=c.port, dbname=name, user=name)

    def stop(self) -> None:
        """Stop the server with a fast shutdown: open sessions are ended, committed data is
        kept. A server this process did not start (``LocalStack.attach``) is found by its pid
        file."""
        if self.process is not None:
            self.process.stop(timeout=30)
            return
        ManagedProcess(
            "PostgreSQL",
            [],
            log_file=Path(os.devnull),
            pid_file=self._pid_file,
            stop_signal=signal.SIGINT,
        ).stop_leftover("started by another command")


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677, as libpq's
    ``PQencryptPasswordConn`` makes it), so the password itself never reaches the server, its
    log or its files. ``password`` must be ASCII without control characters (SASLprep leaves
    it as it is), as generated passwords are."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _trusts(hba: str) -> bool:
    """Whether a pg_hba.conf lets some connection in without a password."""
    return any(
        "trust" in line.split()
        for line in hba.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LauncherError(
            f"the local PostgreSQL speaks without TLS, so it listens on loopback only, and "
            f"{host} is not a loopback address. Set XBUS_STACK_HOST to "
            "127.0.0.1 or leave it unset."
        )


def _server_user() -> str | None:
    """The system user the server runs as: None (ours) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise LauncherError(
            f"PostgreSQL refuses to run as root, and there is no system user {SERVER_USER!r} "
            f"to run it as. Create one (`useradd --system {SERVER_USER}`; Debian's postgresql "
            "package does) or start the stack as a user other than root."
        ) from None
    return SERVER_USER


def _give(path: Path, user: str | None) -> None:
    """Make ``path`` (a folder or a file) the server user's own."""
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def server_can_reach(directory: Path) -> bool:
    """Whether the server, as the system user it runs as, may pass through the folders down to
    ``directory`` that exist already (those the launcher makes below them it makes passable)."""
    try:
        user = _server_user()
    except LauncherError:  # no such user: starting will say so
        return True
    existing = [p for p in [*reversed(directory.parents), directory] if p.exists()]
    return user is None or _blocking_step(existing, user) is None


def cluster_folder_outside(data_dir: Path) -> Path:
    """Where a stack whose data folder the server cannot reach keeps PostgreSQL's cluster and
    socket instead: a folder of its own under ``SERVER_HOME``, named after the data folder."""
    name = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return SERVER_HOME / name


def _blocking_step(steps: list[Path], user: str) -> Path | None:
    """The first of ``steps`` that ``user`` may not pass through, if any."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for step in steps:
        info = step.stat()
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return step
    return None


def _check_reachable(directory: Path, user: str | None) -> None:
    """Raise if ``user`` may not pass through every directory down to ``directory``."""
    if not user:
        return
    step = _blocking_step([*reversed(directory.parents), directory], user)
    if step is not None:
        raise LauncherError(
            f"PostgreSQL runs as the system user {user!r} (it refuses to run as root), "
            f"which may not enter {step} on the way to {directory}. Let it pass "
            f"(`chmod o+x {step}`) or keep the stack's data elsewhere (XBUS_STACK_HOME)."
        )
