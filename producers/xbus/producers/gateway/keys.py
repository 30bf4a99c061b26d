"""API keys of the ingest gateway: which department a caller speaks for.

The keys file (TOML) keeps only SHA-256 digests of the keys, never the keys themselves:

    [departments.market_regulation]
    key_sha256 = ["3f1c...", "a9b2..."]

``xbus gateway new-key --department D`` makes a key, prints it once and adds its digest.
"""

from __future__ import annotations

from pathlib import Path

from xbus.core.token_files import TokenDigests, add_token

_SECTION, _FIELD = "departments", "key_sha256"


class GatewayKeys:
    """Which department each key's digest belongs to."""

    def __init__(self, digests: TokenDigests) -> None:
        self._digests = digests

    @classmethod
    def load(cls, path: Path) -> GatewayKeys:
        """Read a keys file; a missing file means no keys (every call is refused)."""
        return cls(TokenDigests.load(path, _SECTION, _FIELD))

    def department_of(self, key: str) -> str | None:
        """The department ``key`` speaks for, or None for an unknown key."""
        return self._digests.owner_of(key)


def new_key(path: Path, department: str) -> str:
    """Make a key for ``department``, add its digest to the keys file, return the key."""
    return add_token(
        path,
        _SECTION,
        _FIELD,
        department,
        prefix="xbk_",
        title="API keys of the xbus ingest gateway: SHA-256 digests only.",
    )
