"""``xbus gateway new-key`` and ``xbus sse new-token`` as a person runs them: a bad name or a
broken file is one clear line and exit 1, and the file is never left broken."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.checkout import ROOT
from xbus.cli.main import app

RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def _schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_SCHEMAS_DIR", str(ROOT / "schemas"))


def _run(*args: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_key_for_a_department_outside_the_catalog_is_refused_and_the_file_untouched(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.toml"
    assert _run("gateway", "new-key", "--department", "health", "--keys-file", str(keys))[0] == 0
    before = keys.read_text()

    for bad in ("Bad Dept", "no_such_department"):
        code, output = _run("gateway", "new-key", "--department", bad, "--keys-file", str(keys))

        assert code == 1
        assert "is not a department of the catalog" in output and "health" in output
    assert keys.read_text() == before
    assert list(tomllib.loads(before)["departments"]) == ["health"]


def test_a_token_for_a_subscriber_name_that_is_no_name_is_one_clear_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"

    code, output = _run(
        "sse", "new-token", "--subscriber", "bad name!", "--tokens-file", str(tokens)
    )

    assert code == 1
    assert "'bad name!' is not valid" in output and "Traceback" not in output
    assert not tokens.exists()


def test_a_corrupt_tokens_file_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("[subscribers.tax_bureau\ntoken_sha256 = [\n")

    code, output = _run(
        "sse", "new-token", "--subscriber", "tax_bureau", "--tokens-file", str(tokens)
    )

    assert code == 1
    assert f"{tokens}: not valid TOML" in output.replace("\n", "")
    assert tokens.read_text() == "[subscribers.tax_bureau\ntoken_sha256 = [\n"


def test_the_keys_file_refuses_a_name_that_would_break_its_toml(tmp_path: Path) -> None:
    from xbus.core.errors import ConfigurationError
    from xbus.producers.gateway.keys import new_key

    keys = tmp_path / "keys.toml"
    new_key(keys, "health")

    with pytest.raises(ConfigurationError, match="'Bad Dept' is not a valid name"):
        new_key(keys, "Bad Dept")
    assert list(tomllib.loads(keys.read_text())["departments"]) == ["health"]
