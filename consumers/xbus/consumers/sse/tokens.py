"""Bearer tokens of the live stream (SSE): which subscriber a client is.

The tokens file (TOML, ``XBUS_SSE_TOKENS_FILE``) keeps only SHA-256 digests of the tokens,
with a public id for each (see ``xbus.core.token_files``):

    [[subscribers.tax_bureau.tokens]]
    id = "3f1c0b9e27a4"
    sha256 = "3f1c0b9e27a4..."
    created = 2026-11-30T20:14:06Z

``xbus sse new-token|rotate`` make tokens (printed once), ``xbus sse tokens list`` shows
them, ``xbus sse revoke <id>`` removes one; the service sees each change within seconds and
ends the streams a revoked or expired token opened.
"""

from __future__ import annotations

from pathlib import Path

from xbus.core.token_files import TokenFile, TokenKind, add_token
from xbus.core.topics import delivery_topics_pattern

STREAM_TOKENS = TokenKind(
    section="subscribers",
    entries="tokens",
    legacy_field="token_sha256",
    prefix="xbs_",
    title="Stream tokens of xbus subscribers (SSE): SHA-256 digests only.",
    noun="token",
    principal="subscriber",
)


def stream_tokens(path: Path, reload_interval: float = 1.0) -> TokenFile:
    """The tokens file as the running stream service sees it; a missing file admits nobody."""
    return TokenFile(path, STREAM_TOKENS, reload_interval)


def new_token(path: Path, subscriber: str) -> str:
    """Make a stream token for ``subscriber``, add its digest to the tokens file, return the
    token; raises ``ConfigurationError`` for a name that cannot be a subscriber."""
    delivery_topics_pattern(subscriber)  # checks the name the way topic names need it
    return add_token(path, STREAM_TOKENS, subscriber)
