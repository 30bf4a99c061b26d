"""``xbus stack exec``: the command it runs does not outlive the throw-away stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.components import wait_for
from xbus.deploy.stack import StackSettings

pytestmark = pytest.mark.broker


def test_a_terminated_exec_ends_its_command_and_its_stack(tmp_path: Path) -> None:
    marker = tmp_path / "command.pid"
    script = (
        "import os, pathlib, time; "
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid())); time.sleep(600)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBUS_")}
    env["XBUS_STACK_CACHE_DIR"] = str(StackSettings().cache)
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "xbus.cli", "stack", "exec", "--", sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(marker.exists, 180, "the command to start on its stack")
        command = int(marker.read_text())
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(120) != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{command}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{command}").exists(), "the command outlived xbus stack exec"
        output = supervisor.stdout.read() if supervisor.stdout else ""
        data_dir = next(
            line.split(" in ", 1)[1].rstrip(".")
            for line in output.splitlines()
            if line.startswith("starting a test stack in")
        )
        assert not Path(data_dir).exists(), "the stack's data was left behind"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
