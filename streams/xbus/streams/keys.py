"""The key of a delivered record: derived from the view, never copied from the source.

Where the grant sends every field of the dataset's business key, as it is or under a mask
that keeps values apart (``hash``, ``pseudonym``), the key is those fields as the view has
them (joined by ``|``, as the source key is), whatever they are renamed to: the key tells
the subscriber nothing its record does not. Otherwise (a key field withheld, or masked so
that two records could share a value, as ``show_last`` or ``redact`` do) the key is a keyed
pseudonym of the business key: HMAC-SHA256 with a key the office secret derives for the
subscriber and the dataset, 32 hex characters. Each record keeps one key, so compaction,
order per record and a sink's upserts by key still hold; two subscribers' keys of one record
differ, so they cannot join on them; a grant revised or replaced for the same subscriber
keeps the keys; and nothing of the business key can be had from it without the secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from xbus.core.catalog import Dataset
from xbus.streams.grants import Grant
from xbus.streams.masks import RECORD_KEY_DOMAIN, keyed_digest, pseudonym_key

# Masks under which two different key values stay different, so the view's value can key.
_KEEPS_APART = ("hash", "pseudonym")


class RecordKey:
    """How one grant keys what it delivers; built once per compiled grant."""

    __slots__ = ("_digest", "_domain", "sent")

    def __init__(self, grant: Grant, dataset: Dataset) -> None:
        sent: list[tuple[str, Callable[[Any], Any] | None]] = []
        for name in dataset.business_key:
            rule = grant.fields.get(name)
            if rule is None or (rule.mask is not None and rule.mask.type not in _KEEPS_APART):
                sent = []
                break
            sent.append((name, rule.mask.function() if rule.mask is not None else None))
        # The business-key fields with the function the view applies to each, when the grant
        # sends them all apart; else empty, and the key is a pseudonym.
        self.sent: tuple[tuple[str, Callable[[Any], Any] | None], ...] = tuple(sent)
        self._domain = (
            RECORD_KEY_DOMAIN
            + b"\0"
            + grant.subscriber.encode()
            + b"\0"
            + dataset.qualified_name.encode()
        )
        # Made on first use, so that a grant compiles without the secret.
        self._digest: hmac.HMAC | None = None

    def __call__(self, record: dict[str, Any], business_key: str) -> bytes:
        """The key of the view of ``record`` (the event's record, whose business key as the
        source keys it is ``business_key``). Raises what a mask or the secret raises."""
        if self.sent:
            return "|".join(
                str(record[name] if fn is None or record[name] is None else fn(record[name]))
                for name, fn in self.sent
            ).encode()
        if self._digest is None:
            self._digest = keyed_digest(pseudonym_key(), self._domain)
        mac = self._digest.copy()
        mac.update(business_key.encode())
        return mac.hexdigest()[:32].encode()
