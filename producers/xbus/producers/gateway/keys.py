"""API keys of the ingest gateway: which department a caller speaks for.

The keys file (TOML, ``XBUS_GATEWAY_KEYS_FILE``) keeps only SHA-256 digests of the keys, with
a public id for each (see ``xbus.core.token_files``):

    [[departments.market_regulation.keys]]
    id = "3f1c0b9e27a4"
    sha256 = "3f1c0b9e27a4..."
    created = 2026-11-30T20:14:06Z

``xbus gateway new-key|rotate`` make keys (printed once), ``xbus gateway keys list`` shows
them, ``xbus gateway revoke <id>`` removes one; the gateway sees each change within seconds.
"""

from __future__ import annotations

from pathlib import Path

from xbus.core.token_files import TokenFile, TokenKind, add_token

GATEWAY_KEYS = TokenKind(
    section="departments",
    entries="keys",
    legacy_field="key_sha256",
    prefix="xbk_",
    title="API keys of the xbus ingest gateway: SHA-256 digests only.",
    noun="key",
    principal="department",
)


def gateway_keys(path: Path, reload_interval: float = 1.0) -> TokenFile:
    """The keys file as the running gateway sees it; a missing file admits nobody."""
    return TokenFile(path, GATEWAY_KEYS, reload_interval)


def new_key(path: Path, department: str) -> str:
    """Make a key for ``department``, add its digest to the keys file, return the key."""
    return add_token(path, GATEWAY_KEYS, department)
