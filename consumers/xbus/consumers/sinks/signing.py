"""Webhook signatures: the bus signs each request body with the subscriber's secret, and the
subscriber checks the signature and its age before trusting the body.

The header is ``X-Xbus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
Signing the time with the body means an old request replayed later is refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from xbus.consumers.exceptions import WebhookSignatureError
from xbus.core.errors import ConfigurationError

SIGNATURE_HEADER = "X-Xbus-Signature"
DEFAULT_TOLERANCE = 300.0
MIN_SECRET_BYTES = 32
"""The shortest signing secret accepted: 256 bits, the size of the HMAC-SHA256 key it
becomes. An empty secret would make every signature forgeable by anyone."""


class WeakWebhookSecret(ConfigurationError):
    """A webhook signing secret that is empty or shorter than ``MIN_SECRET_BYTES``."""

    reason = "weak_webhook_secret"


def checked_secret(secret: bytes | str, where: str = "the webhook signing secret") -> bytes:
    """``secret`` as bytes; raises ``WeakWebhookSecret`` if it is empty or shorter than
    ``MIN_SECRET_BYTES``, saying ``where`` it came from (never the secret itself)."""
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        found = "is empty" if not key else f"is {len(key)} bytes long"
        raise WeakWebhookSecret(
            f"{where} {found}; it must be at least {MIN_SECRET_BYTES} random bytes "
            "(e.g. `openssl rand -hex 32`), the same on the bus and at the subscriber"
        )
    return key


def sign(body: bytes, secret: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` at ``timestamp`` (default: now); raises
    ``WeakWebhookSecret`` for a secret shorter than ``MIN_SECRET_BYTES``."""
    key = checked_secret(secret)
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_webhook(
    body: bytes,
    signature: str | None,
    secret: bytes | str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise ``WebhookSignatureError`` unless ``signature`` (the X-Xbus-Signature header) is
    the bus's signature of exactly ``body`` under ``secret``, made at most ``tolerance``
    seconds from now. Pass the raw request body, before any JSON parsing. Raises
    ``WeakWebhookSecret`` (a ``ConfigurationError``) if ``secret`` is empty or shorter than
    ``MIN_SECRET_BYTES``: an unset secret variable must not pass as no protection."""
    key = checked_secret(secret)
    if not signature:
        raise WebhookSignatureError(f"the request has no {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in signature.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} has no timestamp (t=<unix seconds>)"
        ) from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureError(
            f"the signature was made at {timestamp}, {abs(current - timestamp):.0f} s from now; "
            f"more than {tolerance:.0f} s is refused as a possible replay"
        )
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # Several v1 values are allowed so a subscriber can rotate its secret without a gap.
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise WebhookSignatureError(
            "the signature does not match the body: forged, altered, or signed with another secret"
        )
