"""Where the live stream keeps the key that signs resume ids: in the secrets folder, with
a key an earlier version kept next to the tokens file moved there, not replaced."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from xbus.consumers.sse.service import StreamSettings


def _settings(tmp_path: Path) -> StreamSettings:
    return StreamSettings(tokens_file=tmp_path / "home" / "sse-tokens.toml")


def test_a_new_key_is_made_once_in_the_secrets_folder(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"

    first = _settings(tmp_path).resume_secret(secrets_dir)

    kept = secrets_dir / "sse-resume-secret"
    assert kept.read_text().strip().encode() == first and len(first) >= 16
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert not (tmp_path / "home" / "sse-resume-secret").exists()
    assert _settings(tmp_path).resume_secret(secrets_dir) == first  # ids survive a restart


def test_the_secrets_folder_is_xbus_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xbus.core.settings import bus_settings

    monkeypatch.setenv("XBUS_SECRETS_DIR", str(tmp_path / "from-env"))
    bus_settings.cache_clear()
    try:
        _settings(tmp_path).resume_secret()
    finally:
        bus_settings.cache_clear()
    assert (tmp_path / "from-env" / "sse-resume-secret").is_file()


def test_a_key_kept_next_to_the_tokens_file_is_moved_not_replaced(tmp_path: Path) -> None:
    old = tmp_path / "home" / "sse-resume-secret"
    old.parent.mkdir()
    old.write_text("an-old-key-of-more-than-16-bytes\n")
    old.chmod(0o600)

    key = _settings(tmp_path).resume_secret(tmp_path / "secrets")

    assert key == b"an-old-key-of-more-than-16-bytes"  # resume ids issued before stay valid
    assert not old.exists()
    assert (tmp_path / "secrets" / "sse-resume-secret").read_text().strip() == key.decode()
