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

SIGNATURE_HEADER = "X-Xbus-Signature"
DEFAULT_TOLERANCE = 300.0


def sign(body: bytes, secret: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
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
    seconds from now. Pass the raw request body, before any JSON parsing."""
    key = secret.encode() if isinstance(secret, str) else secret
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
