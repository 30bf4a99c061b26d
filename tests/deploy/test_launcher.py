"""Faults of the local launcher, on the real Kafka jars: each gets a clear message and a clean
exit, never a hang and never a half-started broker."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from xbus.deploy.errors import LauncherError
from xbus.deploy.kafka import KafkaConfig, LocalKafka
from xbus.deploy.process import TAG_VARIABLE, ManagedProcess, free_port
from xbus.deploy.stack import StackSettings

pytestmark = pytest.mark.broker


def _config(tmp_path: Path, **overrides: object) -> KafkaConfig:
    values: dict[str, object] = {
        "port": free_port(),
        "controller_port": free_port(),
        "data_dir": tmp_path / "kafka",
        "cache_dir": StackSettings().cache,
        "run_dir": tmp_path / "run",
        "heap": "256m",
        "secrets_dir": tmp_path / "secrets",
    }
    values.update(overrides)
    return KafkaConfig(**values)  # type: ignore[arg-type]


def test_a_taken_port_is_reported_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = LocalKafka(_config(tmp_path, port=port))
        with pytest.raises(LauncherError, match=f"port {port} .* already in use.*KAFKA_PORT"):
            kafka.start()
    assert kafka.process is None or not kafka.process.running


def test_a_broker_not_up_in_time_is_stopped_with_its_log(tmp_path: Path) -> None:
    kafka = LocalKafka(_config(tmp_path, start_timeout=0.5))
    with pytest.raises(LauncherError, match=r"did not get ready .* within 0s and was stopped"):
        kafka.start()
    assert kafka.process is not None and not kafka.process.running
    assert list((tmp_path / "run").glob("*.pid")) == []


def test_a_data_dir_that_is_not_kafkas_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "log").mkdir(parents=True)
    (tmp_path / "kafka" / "log" / "notes.txt").write_text("mine")
    with pytest.raises(LauncherError, match="no meta.properties"):
        LocalKafka(_config(tmp_path)).start()
    assert (tmp_path / "kafka" / "log" / "notes.txt").read_text() == "mine"


def test_a_second_start_reuses_the_data(tmp_path: Path) -> None:
    config = _config(tmp_path)
    kafka = LocalKafka(config)
    kafka.start()
    try:
        admin = AdminClient(config.client_config())
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(30)
    finally:
        kafka.stop()
    assert not kafka.process.running  # type: ignore[union-attr]

    again = LocalKafka(config)
    again.start()
    try:
        topics = AdminClient(config.client_config()).list_topics(timeout=30).topics
    finally:
        again.stop()
    assert "kept" in topics


def _wait_for_environment(pid: int) -> None:
    # Popen returns once exec has begun, a moment before the kernel has laid out the new
    # program's environment: until then /proc/<pid>/environ reads empty. A process left by an
    # earlier run is long past that moment.
    environ = Path(f"/proc/{pid}/environ")
    deadline = time.monotonic() + 10
    while not environ.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_process_left_by_a_killed_run_is_stopped_and_a_reused_pid_is_not(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "run" / "demo.pid"
    pid_file.parent.mkdir()
    leftover = subprocess.Popen(["sleep", "300"], env={**os.environ, TAG_VARIABLE: str(pid_file)})
    _wait_for_environment(leftover.pid)
    pid_file.write_text(str(leftover.pid))
    ManagedProcess("demo", [], log_file=tmp_path / "log", pid_file=pid_file).stop_leftover()
    assert leftover.wait(10) is not None
    assert not pid_file.exists()

    stranger = subprocess.Popen(["sleep", "300"])
    try:
        pid_file.write_text(str(stranger.pid))  # the pid now belongs to someone else
        ManagedProcess("demo", [], log_file=tmp_path / "log", pid_file=pid_file).stop_leftover()
        assert stranger.poll() is None
        assert not pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()
