"""``xbus gateway keys list|revoke|rotate`` and ``xbus sse tokens list|revoke|rotate`` as a
person runs them: ids and dates shown, never a secret; a wrong id, name or duration is one
clear line and exit 1, and the file is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.checkout import ROOT
from xbus.cli.main import app
from xbus.consumers.sse.tokens import STREAM_TOKENS, new_token
from xbus.core.token_files import TokenFile, read_entries
from xbus.producers.gateway.keys import GATEWAY_KEYS, new_key

RUNNER = CliRunner()


@pytest.fixture(autouse=True)
def _schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_SCHEMAS_DIR", str(ROOT / "schemas"))


def _run(*args: str) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_list_shows_ids_and_dates_and_never_a_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    made = [new_key(keys, "health"), new_key(keys, "tax")]

    code, out, _ = _run("gateway", "keys", "list", "--keys-file", str(keys))

    assert code == 0
    for entry in read_entries(keys, GATEWAY_KEYS):
        assert entry.id in out and entry.principal in out
    assert out.count("active") == 2
    assert not any(key in out or key[4:20] in out for key in made)


def test_rotate_prints_the_new_key_once_and_keeps_the_old_for_its_grace(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    old = new_key(keys, "health")

    code, out, err = _run(
        "gateway", "rotate", "--department", "health", "--grace", "2h", "--keys-file", str(keys)
    )

    assert code == 0
    new = out.strip()
    service = TokenFile(keys, GATEWAY_KEYS)
    assert new.startswith("xbk_") and service.holder_of(new) is not None
    assert service.holder_of(old) is not None and "stays valid until" in err
    listed = _run("gateway", "keys", "list", "--keys-file", str(keys))[1]
    assert "until " in listed and "active" in listed


def test_rotate_now_and_revoke_end_keys_at_once(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    old = new_token(tokens, "tax_bureau")
    code, out, err = _run(
        "sse", "rotate", "--subscriber", "tax_bureau", "--now", "--tokens-file", str(tokens)
    )
    assert code == 0 and "revoked token" in err
    new = out.strip()
    service = TokenFile(tokens, STREAM_TOKENS)
    assert service.holder_of(old) is None and service.holder_of(new) is not None

    new_id = read_entries(tokens, STREAM_TOKENS)[0].id
    assert _run("sse", "revoke", new_id, "--tokens-file", str(tokens))[0] == 0
    assert TokenFile(tokens, STREAM_TOKENS).holder_of(new) is None
    assert "no tokens" in _run("sse", "tokens", "list", "--tokens-file", str(tokens))[1]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("gateway", "revoke", "0123456789ab"), "has no key with id '0123456789ab'"),
        (("gateway", "rotate", "--department", "nowhere"), "is not a department of the catalog"),
        (("gateway", "rotate", "--department", "health", "--grace", "soon"), "is no duration"),
        (("sse", "rotate", "--subscriber", "Bad Name"), "'Bad Name' is not valid"),
    ],
)
def test_a_wrong_id_name_or_duration_is_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    keys = tmp_path / "keys.toml"
    new_key(keys, "health")
    before = keys.read_text()
    option = "--tokens-file" if args[0] == "sse" else "--keys-file"

    result = RUNNER.invoke(app, [*args, option, str(keys)])

    assert result.exit_code in (1, 2)
    assert words in result.output.replace("\n", " ") and "Traceback" not in result.output
    assert keys.read_text() == before
