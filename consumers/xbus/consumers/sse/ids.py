"""Resume ids of the live stream: the SSE ``id`` of each event, which a client sends back as
``Last-Event-ID`` to go on exactly after that event.

An id names the position after its event in every partition of the stream (for each dataset,
the next offset of each of its partitions) and the subscriber it was issued to, signed with
HMAC-SHA256 under the server's secret:

    base64url(JSON {"v": 1, "s": subscriber, "p": {dataset: [offset of partition 0, ...]}})
    "." base64url(first 16 bytes of the HMAC)

The client cannot move a position, nor use another subscriber's id; a server with the same
secret (after a restart, or a second replica) accepts the ids of the first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Any

from xbus.core.errors import XbusError

Positions = dict[str, list[int]]
"""For each dataset of the stream, the next offset to send of each partition (by index)."""

VERSION = 1
# 128 bits: forging still takes 2**128 tries, and the id travels with every event.
_MAC_BYTES = 16
_DOMAIN = b"xbus-sse-resume-id\n"
_DATASET = re.compile(r"^[a-z][a-z0-9_]*$")
_LONGEST = 64 * 1024


class ResumeIdRefused(XbusError):
    """A ``Last-Event-ID`` the stream will not resume from; ``status`` and ``reason`` are the
    HTTP answer."""

    status = 400
    reason = "invalid_resume_id"


class MalformedResumeId(ResumeIdRefused):
    """Not an id this service issues (truncated, altered encoding, wrong shape)."""

    reason = "malformed_resume_id"


class ForgedResumeId(ResumeIdRefused):
    """An id whose signature does not match: altered, or issued under another secret."""

    status = 403
    reason = "forged_resume_id"


class ForeignResumeId(ResumeIdRefused):
    """A genuine id issued to another subscriber."""

    status = 403
    reason = "foreign_resume_id"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ResumeIds:
    """Issues and reads resume ids under one server secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a resume-id secret needs at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, subscriber: str, positions: Positions) -> str:
        """The id of the position ``positions`` in ``subscriber``'s stream."""
        payload = json.dumps(
            {"v": VERSION, "s": subscriber, "p": positions}, separators=(",", ":")
        ).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def read(self, subscriber: str, resume_id: str) -> Positions:
        """The positions an id names; raises ``MalformedResumeId``, ``ForgedResumeId`` or
        ``ForeignResumeId`` (never a silent start elsewhere)."""
        text = resume_id.strip()
        body, dot, mac = text.partition(".")
        if len(text) > _LONGEST or not dot or not body:
            raise MalformedResumeId(
                "the Last-Event-ID is not a resume id of this stream (expected <payload>.<mac>); "
                "send back the id of the last event you received, unchanged"
            )
        try:
            payload, signature = _b64decode(body), _b64decode(mac)
        except (ValueError, binascii.Error):
            raise MalformedResumeId(
                "the Last-Event-ID is not valid base64url; send back the id of the last event "
                "you received, unchanged"
            ) from None
        if len(signature) != _MAC_BYTES:
            raise MalformedResumeId(
                "the Last-Event-ID has no signature of the right length; send back the id of "
                "the last event you received, unchanged"
            )
        if not hmac.compare_digest(signature, self._mac(payload)):
            raise ForgedResumeId(
                "the Last-Event-ID was not issued by this service (altered, or signed under "
                "another secret); reconnect without it to start from the live end, or with "
                "?from=earliest"
            )
        found = _parse(payload)
        if found["s"] != subscriber:
            raise ForeignResumeId(
                f"the Last-Event-ID was issued to subscriber {found['s']!r}, not to "
                f"{subscriber!r}; a stream resumes only from its own ids"
            )
        positions: Positions = found["p"]
        return positions


def _parse(payload: bytes) -> dict[str, Any]:
    """The signed payload, checked for shape (a signed id of another version or a bug)."""
    try:
        found = json.loads(payload)
    except ValueError:
        found = None
    good = (
        isinstance(found, dict)
        and found.get("v") == VERSION
        and isinstance(found.get("s"), str)
        and isinstance(found.get("p"), dict)
        and all(
            isinstance(dataset, str)
            and _DATASET.match(dataset)
            and isinstance(offsets, list)
            and all(type(o) is int and o >= 0 for o in offsets)
            for dataset, offsets in found["p"].items()
        )
    )
    if not good:
        raise MalformedResumeId(
            f"the Last-Event-ID has a form this service does not read (version {VERSION} "
            "expected); reconnect without it to start from the live end"
        )
    assert isinstance(found, dict)
    return found
