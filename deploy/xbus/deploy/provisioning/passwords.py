"""The Kafka users' passwords, kept in ``<secrets>/kafka/<user>.password``: a 0700 folder of
0600 files, each made with its mode (never readable by others, not even for a moment). A
password is never printed, logged or put on a command line."""

from __future__ import annotations

import secrets
from pathlib import Path

from xbus.core.errors import ConfigurationError
from xbus.core.secret_files import read_secret, write_private

# 32 random bytes, URL-safe base64 (43 characters).
PASSWORD_BYTES = 32


def password_path(secrets_dir: Path, user: str) -> Path:
    """Where ``user``'s password is kept."""
    return secrets_dir / "kafka" / f"{user}.password"


def stored_password(secrets_dir: Path, user: str) -> str | None:
    """``user``'s kept password, or ``None`` if none is kept."""
    try:
        return read_secret(password_path(secrets_dir, user)) or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the password of {user}: {exc}") from exc


def password_from_file(path: Path, user: str) -> str:
    """The password the provisioning file names for ``user`` (trailing whitespace dropped)."""
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the password file of {user}, {path}: {exc}") from exc
    if len(password) < 12:
        raise ConfigurationError(
            f"the password in {path} (for {user}) is shorter than 12 characters; use a longer one"
        )
    return password


def new_password() -> str:
    """A fresh random password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def keep_password(secrets_dir: Path, user: str, password: str) -> Path:
    """Write ``user``'s password to its file (0600 from creation) in the 0700 folder."""
    return write_private(password_path(secrets_dir, user), password + "\n")


def forget_password(secrets_dir: Path, user: str) -> None:
    """Remove ``user``'s kept password, if any."""
    password_path(secrets_dir, user).unlink(missing_ok=True)
