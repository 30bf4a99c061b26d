"""Generated secrets kept in files: a 0700 folder, each file 0600 from the moment it exists
(never written first and narrowed after), read back by whoever is given the file's path. No
secret is passed on a command line, where ``ps`` would show it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Any


def open_private(path: Path, *, binary: bool = False) -> IO[Any]:
    """``path`` opened for writing (emptied first), made readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if binary:
        return os.fdopen(descriptor, "wb")
    return os.fdopen(descriptor, "w", encoding="utf-8")


def write_private(path: Path, content: str | bytes) -> Path:
    """Write ``content`` to ``path``, readable by its owner only; its folder is made 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open_private(path, binary=isinstance(content, bytes)) as out:
        out.write(content)
    return path


def password_file(path: Path) -> Path:
    """The file holding a generated password, made (256 random bits) on first use."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path


def read_secret(path: Path) -> str:
    """The secret a file holds, without surrounding whitespace."""
    return path.read_text(encoding="utf-8").strip()
