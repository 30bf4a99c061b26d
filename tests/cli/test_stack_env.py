"""The running ``make run`` stack from another shell: ``xbus sse ...`` and ``xbus gateway
...`` act on the files the demo's stream and gateway read, and ``xbus stack env`` prints
what an office command needs to reach the stack, paths only, never a secret."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xbus.cli.main import app
from xbus.cli.stack import _demo_files, _demo_stream_token
from xbus.consumers.sse.service import StreamSettings
from xbus.consumers.sse.tokens import STREAM_TOKENS
from xbus.core.token_files import read_entries
from xbus.deploy.stack import LocalStack
from xbus.producers.gateway.settings import GatewaySettings

RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An XBUS_HOME of its own, and none of the test stack's settings in the environment."""
    for name in [n for n in os.environ if n.startswith("XBUS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XBUS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(*args: str) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_demo_reads_the_files_the_cli_writes(home: Path) -> None:
    tokens_file, keys_file = _demo_files()
    assert tokens_file == StreamSettings().tokens_file == home / "sse-tokens.toml"
    assert keys_file == GatewaySettings().keys_file == home / "gateway-keys.toml"

    stack = LocalStack.persistent()
    kept = _demo_stream_token(stack, tokens_file)
    (entry,) = read_entries(tokens_file, STREAM_TOKENS)
    code, out, _ = _run("sse", "tokens", "list")  # docs/sse.md, without --tokens-file
    assert code == 0 and entry.id in out and "open_data" in out

    code, _, err = _run("sse", "revoke", entry.id)

    assert code == 0, err
    assert read_entries(tokens_file, STREAM_TOKENS) == []
    # The next make run gives the demo a token in force again.
    token = kept.read_text()
    assert _demo_stream_token(stack, tokens_file) == kept and kept.read_text() != token
    assert len(read_entries(tokens_file, STREAM_TOKENS)) == 1


def test_stack_env_points_a_shell_at_the_stack_as_the_office(home: Path) -> None:
    stack = LocalStack.persistent()
    stack.kafka.config.data_dir.mkdir(parents=True)  # as the broker's first start leaves it

    code, out, err = _run("stack", "env")

    assert code == 0, err
    lines = out.splitlines()
    # xbus's settings, and libpq's password file for PostgreSQL.
    assert all(line.startswith(("export XBUS_", "export PGPASSFILE=")) for line in lines), out
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
    secrets = stack.data_dir / "secrets"
    assert exported["XBUS_HOME"] == str(home)
    assert exported["XBUS_SASL_USERNAME"] == "admin"
    assert exported["XBUS_SASL_PASSWORD_FILE"] == str(secrets / "kafka" / "admin.password")
    assert exported["XBUS_SCHEMA_REGISTRY_USERNAME"] == "office"
    assert exported["XBUS_SECRETS_DIR"] == str(secrets)
    assert Path(exported["XBUS_GRANT_SIGNING_KEY_FILE"]).parent == secrets
    assert exported["XBUS_SSE_TOKENS_FILE"] == str(home / "sse-tokens.toml")
    assert exported["PGPASSFILE"] == str(secrets / "postgres" / "pgpass")
    assert "XBUS_SASL_PASSWORD" not in exported
    assert "XBUS_SCHEMA_REGISTRY_PASSWORD" not in exported
    kept = [p.read_text().strip() for p in secrets.rglob("*") if p.is_file()]
    assert kept and not [s for s in kept if s and s.splitlines()[-1] in out]


def test_stack_env_without_a_stack_says_how_to_start_one(home: Path) -> None:
    code, out, err = _run("stack", "env")

    assert code == 1 and out == ""
    assert "no local stack in" in err and "make run" in err
