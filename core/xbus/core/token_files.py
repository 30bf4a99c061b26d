"""Files of bearer-token digests: which principal (a department calling the ingest gateway, a
subscriber reading its stream) each token speaks for, since when, and until when.

A file keeps only SHA-256 digests of the tokens, never the tokens themselves. Each token has
a short public id (the first 12 hex digits of its digest) by which a person lists, rotates and
revokes it without knowing it:

    [[<section>.<principal>.<entries>]]
    id = "3f1c0b9e27a4"
    sha256 = "3f1c0b9e27a4..."
    created = 2026-11-30T20:14:06Z
    expires = 2026-12-01T20:14:06Z   # only on a token rotated out, valid until then

Files written before ids existed (``<legacy_field> = ["3f1c...", ...]`` under each principal)
are read as they are, and rewritten in this form by the next change the CLI makes.

A running service holds a ``TokenFile``: it looks at the file's modification at most once a
``reload_interval`` and rereads it when it changed, so a revocation takes effect within
seconds, without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from xbus.core.errors import ConfigurationError
from xbus.core.secret_files import open_private

log = logging.getLogger(__name__)

# The names topics take (gov.<department>., deliver.<subscriber>.), which are also bare TOML
# keys: a name outside it would write a table header that breaks the whole file.
_PRINCIPAL = re.compile(r"^[a-z][a-z0-9_]*$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
ID_LENGTH = 12


@dataclass(frozen=True)
class TokenKind:
    """What a file holds: its section (``departments``), the name of each principal's list of
    tokens (``keys``), the field files without ids used (``key_sha256``), the prefix of its
    tokens (``xbk_``), the line on top of a new file, and the nouns errors use."""

    section: str
    entries: str
    legacy_field: str
    prefix: str
    title: str
    noun: str  # "key", "token"
    principal: str  # "department", "subscriber"


@dataclass(frozen=True)
class TokenEntry:
    """One token as its file keeps it: never the token, only its digest."""

    id: str
    principal: str
    sha256: str
    created: datetime | None = None
    expires: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        """Whether the token is still accepted at ``now`` (a rotated one until ``expires``)."""
        return self.expires is None or now < self.expires


@dataclass(frozen=True)
class Holder:
    """Who presented a valid token: its principal, and the token's public id."""

    principal: str
    token_id: str


@dataclass(frozen=True)
class Issued:
    """A new token, to be shown once, and its entry in the file."""

    token: str
    entry: TokenEntry


def digest(token: str) -> str:
    """The SHA-256 hex digest of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(sha256: str) -> str:
    """The public id of the token with digest ``sha256``."""
    return sha256[:ID_LENGTH]


def now_utc() -> datetime:
    """The current time in UTC, to the second (as the file keeps it)."""
    return datetime.now(UTC).replace(microsecond=0)


# -- reading ---------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not valid TOML ({exc}); fix or remove the file, then make the tokens again"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc


def _when(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigurationError(
            f"{where} must be a date and time with an offset, e.g. 2026-12-01T08:00:00Z"
        )
    return value.astimezone(UTC)


def _entry(path: Path, kind: TokenKind, principal: str, index: int, raw: object) -> TokenEntry:
    where = f"{path}: {kind.section}.{principal}.{kind.entries}[{index}]"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where} must be a table with id, sha256 and created")
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _DIGEST.match(sha256):
        raise ConfigurationError(f"{where}.sha256 must be a SHA-256 hex digest (64 hex digits)")
    found = raw.get("id", token_id(sha256))
    if found != token_id(sha256):
        raise ConfigurationError(
            f"{where}.id is {found!r} but its digest's id is {token_id(sha256)!r}; "
            "remove the id line, or fix it"
        )
    return TokenEntry(
        token_id(sha256),
        principal,
        sha256,
        _when(raw.get("created"), f"{where}.created"),
        _when(raw.get("expires"), f"{where}.expires"),
    )


def read_entries(path: Path, kind: TokenKind) -> list[TokenEntry]:
    """Every token of the file, in file order; a missing file has none. ``ConfigurationError``
    names the file and the place of anything it cannot read."""
    if not path.exists():
        return []
    table = _read(path).get(kind.section, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [{kind.section}] must be a table of {kind.section}")
    entries: list[TokenEntry] = []
    for principal, tokens in table.items():
        if not isinstance(tokens, dict):
            raise ConfigurationError(f"{path}: {kind.section}.{principal} must be a table")
        legacy = tokens.get(kind.legacy_field, [])
        if not isinstance(legacy, list) or not all(
            isinstance(d, str) and _DIGEST.match(d) for d in legacy
        ):
            raise ConfigurationError(
                f"{path}: {kind.section}.{principal}.{kind.legacy_field} must be a list of "
                "SHA-256 hex digests"
            )
        entries += [TokenEntry(token_id(d), principal, d) for d in legacy]
        listed = tokens.get(kind.entries, [])
        if not isinstance(listed, list):
            raise ConfigurationError(
                f"{path}: {kind.section}.{principal}.{kind.entries} must be an array of tables "
                f"([[{kind.section}.{principal}.{kind.entries}]])"
            )
        entries += [_entry(path, kind, principal, i, raw) for i, raw in enumerate(listed)]
    return entries


# -- what a running service holds ------------------------------------------------------------


class TokenFile:
    """A tokens file as a running service sees it: which principal a presented token speaks
    for, checked against the file as it is now (reread within ``reload_interval`` seconds of a
    change), so a revoked or expired token is refused on its next use."""

    def __init__(
        self,
        path: Path,
        kind: TokenKind,
        reload_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.kind = kind
        self._reload_interval = reload_interval
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._entries: tuple[TokenEntry, ...] = ()
        self._refresh(force=True)

    def _refresh(self, *, force: bool = False) -> None:
        """Reread the file if it changed (looking at most once a ``reload_interval``). A file
        that cannot be read admits nobody until it is fixed: better refuse everyone than keep
        accepting a token someone meant to revoke."""
        now = self._clock()
        if not force and now - self._checked_at < self._reload_interval:
            return
        self._checked_at = now
        try:
            stat = self.path.stat()
            stamp: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            self._entries = tuple(read_entries(self.path, self.kind))
        except ConfigurationError as exc:
            log.error("every %s is refused until the file is fixed: %s", self.kind.noun, exc)
            self._entries = ()
        else:
            log.info("%s: %d %s(s) in force", self.path, len(self._entries), self.kind.noun)

    def holder_of(self, token: str) -> Holder | None:
        """Who ``token`` speaks for, or None for an unknown, revoked or expired token. Only
        digests are compared, each with ``hmac.compare_digest`` and every one of them, so the
        time taken says nothing about the token nor about which entry matched."""
        self._refresh()
        presented = digest(token)
        found: TokenEntry | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, presented):
                found = entry
        if found is None or not found.valid_at(now_utc()):
            return None
        return Holder(found.principal, found.id)

    def is_valid(self, token_id: str) -> bool:
        """Whether the token with public id ``token_id`` is still in force (not revoked, not
        expired): what a long-lived stream checks to end when its token goes."""
        self._refresh()
        now = now_utc()
        return any(e.id == token_id and e.valid_at(now) for e in self._entries)


# -- changing a file (the CLI) ---------------------------------------------------------------


def _check_principal(principal: str) -> None:
    if not _PRINCIPAL.match(principal):
        raise ConfigurationError(
            f"{principal!r} is not a valid name: lowercase letters, digits and underscores, "
            "starting with a letter (as in topic names)"
        )


def _toml_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _render(kind: TokenKind, header: list[str], entries: list[TokenEntry]) -> str:
    lines = list(header)
    for principal in sorted({e.principal for e in entries}):
        for entry in (e for e in entries if e.principal == principal):
            lines += [
                "",
                f"[[{kind.section}.{principal}.{kind.entries}]]",
                f'id = "{entry.id}"',
                f'sha256 = "{entry.sha256}"',
            ]
            if entry.created is not None:
                lines.append(f"created = {_toml_time(entry.created)}")
            if entry.expires is not None:
                lines.append(f"expires = {_toml_time(entry.expires)}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the file's lock, so that two commands changing it at once lose nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _update(
    path: Path, kind: TokenKind, change: Callable[[list[TokenEntry]], list[TokenEntry]]
) -> None:
    """Apply ``change`` to the file's tokens (expired ones dropped), and replace the file at
    once (a service never reads half of it), readable by its owner only."""
    with _locked(path):
        entries = read_entries(path, kind)  # checked as the service reads it, before writing
        header = (
            [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
            if path.exists()
            else []
        )
        header = header or [f"# {kind.title}"]
        now = now_utc()
        kept = change([e for e in entries if e.valid_at(now)])
        draft = path.with_name(f".{path.name}.{os.getpid()}.new")
        with open_private(draft) as f:
            f.write(_render(kind, header, kept))
        os.replace(draft, path)


def _new(kind: TokenKind, principal: str, taken: list[TokenEntry]) -> Issued:
    ids = {e.id for e in taken}
    while True:  # an id already in the file (2^-48 per token) would name two tokens
        token = f"{kind.prefix}{secrets.token_urlsafe(32)}"
        sha256 = digest(token)
        if token_id(sha256) not in ids:
            return Issued(token, TokenEntry(token_id(sha256), principal, sha256, now_utc()))


def issue(path: Path, kind: TokenKind, principal: str) -> Issued:
    """Make a token for ``principal`` (``kind.prefix`` + 256 random bits) and add its digest
    to the file (created readable by its owner only). ``ConfigurationError`` for a principal
    that is no valid name, or a file that cannot be read (named, and left as it is)."""
    _check_principal(principal)
    made: list[Issued] = []

    def add(entries: list[TokenEntry]) -> list[TokenEntry]:
        made.append(_new(kind, principal, entries))
        return [*entries, made[0].entry]

    _update(path, kind, add)
    return made[0]


def add_token(path: Path, kind: TokenKind, principal: str) -> str:
    """Make a token for ``principal``, add its digest to the file, return the token."""
    return issue(path, kind, principal).token


def revoke(path: Path, kind: TokenKind, wanted: str) -> TokenEntry:
    """Remove the token with public id ``wanted`` from the file; a service refuses it within
    seconds. ``ConfigurationError`` if the file has no token of that id."""
    removed: list[TokenEntry] = []

    def drop(entries: list[TokenEntry]) -> list[TokenEntry]:
        removed.extend(e for e in entries if e.id == wanted)
        if not removed:
            raise ConfigurationError(
                f"{path} has no {kind.noun} with id {wanted!r} (expired ones are dropped); "
                f"see them with `{kind.entries} list`"
            )
        return [e for e in entries if e.id != wanted]

    _update(path, kind, drop)
    return removed[0]


def rotate(
    path: Path, kind: TokenKind, principal: str, grace: timedelta
) -> tuple[Issued, list[TokenEntry]]:
    """Make a new token for ``principal``; its other tokens stay valid for ``grace`` more (an
    earlier expiry is kept), or are removed at once with a zero ``grace``. Returns the new
    token and the old ones as they now stand."""
    _check_principal(principal)
    made: list[Issued] = []
    old: list[TokenEntry] = []

    def swap(entries: list[TokenEntry]) -> list[TokenEntry]:
        until = now_utc() + grace
        kept: list[TokenEntry] = []
        for entry in entries:
            if entry.principal != principal:
                kept.append(entry)
                continue
            ends = until if entry.expires is None else min(entry.expires, until)
            old.append(replace(entry, expires=ends))
        made.append(_new(kind, principal, entries))
        if grace > timedelta(0):
            kept += old
        return [*kept, made[0].entry]

    _update(path, kind, swap)
    return made[0], old
