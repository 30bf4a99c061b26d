"""Where the local stack keeps PostgreSQL's cluster: with its data, unless the server's system
user (the stack runs it as ``postgres`` when started by root) cannot pass the folders above."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from xbus.deploy.postgres import SERVER_HOME, SERVER_USER
from xbus.deploy.stack import LocalStack, StackSettings

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not any(e.pw_name == SERVER_USER for e in pwd.getpwall()),
    reason="only a root supervisor runs PostgreSQL as its own system user",
)


def _stack(home: Path) -> LocalStack:
    return LocalStack.persistent(StackSettings(home=home))


@pytest.fixture
def passable() -> Iterator[Path]:
    """A folder under /tmp that anyone may pass through (pytest's own are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="xbus-home-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_passable_home_keeps_the_cluster_with_the_data(passable: Path) -> None:
    home = passable / ".xbus"
    home.mkdir()

    stack = _stack(home)

    assert stack.postgres.config.data_dir == home / "data" / "postgres" / "data"
    assert stack.postgres.config.socket_dir is None


def test_a_home_the_server_cannot_pass_moves_only_the_cluster_outside(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    home = closed / "checkout" / ".xbus"
    home.mkdir(parents=True)
    closed.chmod(0o700)  # as mktemp -d, or /root, makes it

    stack, again = _stack(home), _stack(home)

    cluster = stack.postgres.config.data_dir.parent
    assert cluster.parent == SERVER_HOME
    assert again.postgres.config.data_dir.parent == cluster  # the same one at every start
    assert stack.postgres.config.socket_dir == cluster / "run"
    assert stack.postgres.config.log_dir == home / "data" / "postgres"
    other = _stack(tmp_path / "closed" / "other" / ".xbus")
    assert other.postgres.config.data_dir.parent != cluster
