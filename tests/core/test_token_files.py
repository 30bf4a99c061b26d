"""Tokens files as the gateway and the live stream read them, and as the CLI changes them:
ids instead of secrets, revocation and rotation seen by a running service without a restart,
files of before ids still read, and comparisons that take the same time whatever is sent."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from xbus.core import token_files
from xbus.core.errors import ConfigurationError
from xbus.core.token_files import (
    Holder,
    TokenFile,
    TokenKind,
    issue,
    read_entries,
    revoke,
    rotate,
)

KIND = TokenKind(
    section="departments",
    entries="keys",
    legacy_field="key_sha256",
    prefix="xbk_",
    title="test keys",
    noun="key",
    principal="department",
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_file_written_before_ids_is_read_and_migrated_on_the_next_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(f'# old keys\n\n[departments.health]\nkey_sha256 = ["{_sha("xbk_old")}"]\n')
    service = TokenFile(path, KIND)
    assert service.holder_of("xbk_old") == Holder("health", _sha("xbk_old")[:12])

    new = issue(path, KIND, "tax").token

    text = path.read_text()
    assert "key_sha256" not in text and "[[departments.health.keys]]" in text
    assert text.startswith("# old keys\n")
    assert "xbk_" not in text  # digests only
    assert {e.principal for e in read_entries(path, KIND)} == {"health", "tax"}
    fresh = TokenFile(path, KIND)
    assert fresh.holder_of("xbk_old") is not None
    assert fresh.holder_of(new) == Holder("tax", _sha(new)[:12])
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_revoked_token_is_refused_once_the_service_looks_again(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    kept, gone = issue(path, KIND, "health"), issue(path, KIND, "health")
    clock = Clock()
    service = TokenFile(path, KIND, reload_interval=1.0, clock=clock)
    assert service.holder_of(gone.token) is not None

    revoke(path, KIND, gone.entry.id)

    clock.now = 0.5  # the file is looked at no more than once a second
    assert service.holder_of(gone.token) is not None
    clock.now = 1.0
    assert service.holder_of(gone.token) is None
    assert not service.is_valid(gone.entry.id)
    assert service.holder_of(kept.token) == Holder("health", kept.entry.id)


def test_rotation_keeps_the_old_token_for_the_grace_period_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.toml"
    old = issue(path, KIND, "health")
    other = issue(path, KIND, "tax")
    start = token_files.now_utc()

    new, rotated = rotate(path, KIND, "health", timedelta(minutes=10))

    assert [e.id for e in rotated] == [old.entry.id]
    service = TokenFile(path, KIND)
    assert service.holder_of(old.token) is not None
    assert service.holder_of(new.token) is not None
    monkeypatch.setattr(token_files, "now_utc", lambda: start + timedelta(minutes=11))
    assert service.holder_of(old.token) is None
    assert service.holder_of(new.token) is not None
    assert service.holder_of(other.token) is not None
    # The next change drops what has expired.
    issue(path, KIND, "tax")
    assert old.entry.id not in {e.id for e in read_entries(path, KIND)}


def test_rotation_now_revokes_the_old_tokens_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    old = issue(path, KIND, "health")

    new, _ = rotate(path, KIND, "health", timedelta(0))

    service = TokenFile(path, KIND)
    assert service.holder_of(old.token) is None
    assert service.holder_of(new.token) == Holder("health", new.entry.id)


def test_revoking_an_unknown_id_names_the_file_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    issue(path, KIND, "health")
    before = path.read_text()

    with pytest.raises(ConfigurationError, match=r"has no key with id 'nope'"):
        revoke(path, KIND, "nope")
    assert path.read_text() == before


def test_a_broken_file_admits_nobody_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    good = issue(path, KIND, "health")
    text = path.read_text()
    clock = Clock()
    service = TokenFile(path, KIND, clock=clock)

    path.write_text(text + "\n[[departments.health.keys]\n")
    clock.now = 2
    assert service.holder_of(good.token) is None
    path.write_text(text)
    clock.now = 4
    assert service.holder_of(good.token) is not None


def test_a_hand_edited_id_that_does_not_match_its_digest_is_named(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    entry = issue(path, KIND, "health").entry
    path.write_text(path.read_text().replace(entry.id, "000000000000", 1))

    with pytest.raises(ConfigurationError, match=r"departments\.health\.keys\[0\]\.id"):
        read_entries(path, KIND)


def test_the_lookup_compares_every_digest_and_never_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.toml"
    tokens = [issue(path, KIND, "health").token for _ in range(5)]
    service = TokenFile(path, KIND)
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(token_files.hmac, "compare_digest", spy)
    for presented in (tokens[0], tokens[0][:5] + "x" * 20, "xbk_unknown"):
        compared.clear()
        service.holder_of(presented)
        # Every entry is compared, even after the first one matched, and always digests.
        assert len(compared) == 5
        assert all(b == _sha(presented) and presented not in (a, b) for a, b in compared)


def test_commands_changing_the_file_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    made: list[str] = []
    threads = [
        threading.Thread(target=lambda: made.append(issue(path, KIND, "health").entry.id))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(e.id for e in read_entries(path, KIND)) == sorted(made)


def test_a_name_that_would_break_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    with pytest.raises(ConfigurationError, match="'Bad Dept' is not a valid name"):
        issue(path, KIND, "Bad Dept")
    assert not path.exists()
