"""Child processes of the local stack: started in their own session (so a Ctrl-C reaches
only the supervisor, which stops them in order), tied to the supervisor's life (they get
their stop signal, SIGTERM unless told otherwise, if it dies), recorded in pid files, and
stopped with that signal then SIGKILL."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xbus.deploy.errors import LauncherError

_PR_SET_PDEATHSIG = 1


def _die_with_parent(stop_signal: signal.Signals) -> None:
    # Not on Linux: the supervisor's own shutdown still stops its children. Runs after
    # subprocess has switched the child's user, which would have cleared an earlier setting.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, stop_signal)


def credentials_of(user: str | None) -> dict[str, Any]:
    """The ``subprocess`` arguments that run a child as system user ``user``, with that
    user's own groups and none of ours (the caller must be root); none for None (as us)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": os.getgrouplist(user, entry.pw_gid),
    }


def check_port_free(host: str, port: int, what: str, setting: str) -> None:
    """Raise a clear error if ``host:port`` is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise LauncherError(
                f"port {port} on {host} is already in use, so {what} cannot listen there. "
                f"Stop whatever uses it (`ss -ltnp 'sport = :{port}'` shows it) or choose "
                f"another port with {setting}."
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


TAG_VARIABLE = "XBUS_PROCESS_TAG"


def _environment(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


class ManagedProcess:
    """One child process of the stack, with its log file and pid file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_file: Path,
        pid_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
    ) -> None:
        """``stop_signal`` is what asks the process to shut down cleanly; ``user`` is the
        system user it runs as (None: ours)."""
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.pid_file = pid_file
        # The child carries its pid file's path in its environment: how a pid file left by a
        # killed run is told apart from a pid the system has since given to another process.
        self.tag = f"{TAG_VARIABLE}={pid_file}"
        self.env = {**(env if env is not None else os.environ), TAG_VARIABLE: str(pid_file)}
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None

    def recorded_pid(self) -> int | None:
        """The pid in the pid file, if that process is still ours (it carries the file's tag),
        else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid and self.tag.encode() in _environment(pid) else None

    def stop_leftover(self, what: str = "left running by an earlier run") -> None:
        """Stop a process of the same name left running by an earlier, killed run (or
        started by another command: ``what`` says which)."""
        if not self.pid_file.exists():
            return
        pid = self.recorded_pid()
        if pid is not None:
            print(f"stopping {self.name} {what} (pid {pid})", flush=True)
            _terminate_pid(pid, self.stop_signal, timeout=60)
        self.pid_file.unlink(missing_ok=True)

    def signal(self) -> None:
        """Send the stop signal without waiting (``stop`` then waits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)

    def kill(self) -> None:
        """SIGKILL, at once: the process gets no chance to shut down cleanly."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        elif (pid := self.recorded_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not _exited(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def start(self, *, outlive_parent: bool = False) -> None:
        """Start the process, its output going to the log file. It is stopped if this process
        dies, unless ``outlive_parent`` (a broker node ``xbus stack broker start`` brings back
        into a stack run by another command, which stops it by its pid file)."""
        self.stop_leftover()
        self.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        # A log may hold what a component saw: readable by its owner only, however it was made.
        descriptor = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=(
                    None
                    if outlive_parent
                    else functools.partial(_die_with_parent, self.stop_signal)
                ),
                **credentials_of(self.user),
            )
        self.pid_file.write_text(str(self.process.pid))

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``ready()``; stop the process and raise if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                self.pid_file.unlink(missing_ok=True)
                raise LauncherError(
                    f"{self.name} exited (code {code}) before {what}. Last lines of "
                    f"{self.log_file}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.25)
        self.stop()
        raise LauncherError(
            f"{self.name} did not get ready ({what}) within {timeout:.0f}s and was stopped. "
            f"Last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """The stop signal, then SIGKILL after ``timeout`` seconds; a stopped process is left
        alone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold anything.
    return stat[stat.rfind(")") + 2 :].startswith(("Z", "X"))


def _terminate_pid(pid: int, stop_signal: signal.Signals, timeout: float) -> None:
    try:
        os.kill(pid, stop_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
