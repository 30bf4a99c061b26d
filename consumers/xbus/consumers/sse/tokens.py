"""Bearer tokens of the live stream (SSE): which subscriber a client is.

The tokens file (TOML) keeps only SHA-256 digests of the tokens, never the tokens themselves:

    [subscribers.tax_bureau]
    token_sha256 = ["3f1c...", "a9b2..."]

``xbus sse new-token --subscriber S`` makes a token, prints it once and adds its digest.
"""

from __future__ import annotations

from pathlib import Path

from xbus.core.token_files import TokenDigests, add_token
from xbus.core.topics import delivery_topics_pattern

_SECTION, _FIELD = "subscribers", "token_sha256"


class SubscriberTokens:
    """Which subscriber each token's digest belongs to."""

    def __init__(self, digests: TokenDigests) -> None:
        self._digests = digests

    @classmethod
    def load(cls, path: Path) -> SubscriberTokens:
        """Read a tokens file; a missing file means no tokens (every client is refused)."""
        return cls(TokenDigests.load(path, _SECTION, _FIELD))

    def subscriber_of(self, token: str) -> str | None:
        """The subscriber ``token`` belongs to, or None for an unknown token."""
        return self._digests.owner_of(token)


def new_token(path: Path, subscriber: str) -> str:
    """Make a stream token for ``subscriber``, add its digest to the tokens file, return the
    token; raises ``ConfigurationError`` for a name that cannot be a subscriber."""
    delivery_topics_pattern(subscriber)  # checks the name the way topic names need it
    return add_token(
        path,
        _SECTION,
        _FIELD,
        subscriber,
        prefix="xbs_",
        title="Stream tokens of xbus subscribers (SSE): SHA-256 digests only.",
    )
