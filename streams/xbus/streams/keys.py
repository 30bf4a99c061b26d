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
from xbus.streams.exceptions import GrantFailed
from xbus.streams.expressions import failure_text
from xbus.streams.grants import Grant
from xbus.streams.masks import RECORD_KEY_DOMAIN, keyed_digest, pseudonym_key

# Masks under which two different key values stay different, so the view's value can key.
_KEEPS_APART = ("hash", "pseudonym")


class RecordKey:
    """How one grant keys what it delivers; built once per compiled grant."""

    __slots__ = ("_business_key", "_digest", "_domain", "_sent")

    def __init__(self, grant: Grant, dataset: Dataset) -> None:
        sent: list[tuple[str, Callable[[Any], Any] | None, str]] = []
        for name in dataset.business_key:
            rule = grant.fields.get(name)
            if rule is None or (rule.mask is not None and rule.mask.type not in _KEEPS_APART):
                sent = []
                break
            mask = rule.mask
            sent.append((name, mask.function() if mask else None, mask.type if mask else ""))
        # The business-key fields, each with the mask the view applies to it, when the grant
        # sends them all apart; else empty, and the key is a pseudonym.
        self._sent = tuple(sent)
        self._business_key = dataset.business_key
        self._domain = (
            RECORD_KEY_DOMAIN
            + b"\0"
            + grant.subscriber.encode()
            + b"\0"
            + dataset.qualified_name.encode()
        )
        # Made on first use, so that a grant compiles without the secret.
        self._digest: hmac.HMAC | None = None

    @property
    def from_fields(self) -> bool:
        """Whether the key is the business-key fields as the view has them (else a
        pseudonym)."""
        return bool(self._sent)

    def __call__(self, record: dict[str, Any]) -> bytes:
        """The key of the view of ``record`` (the event's ``after``, or ``before`` of a
        DELETE). Raises ``GrantFailed`` where a key field's mask or the secret fails."""
        if self._sent:
            parts = []
            for name, mask, mask_type in self._sent:
                value = record[name]
                if mask is not None and value is not None:
                    try:
                        value = mask(value)
                    except Exception as exc:
                        raise GrantFailed(
                            f"mask {mask_type} on {name} failed: {failure_text(exc)}"
                        ) from exc
                parts.append(str(value))
            return "|".join(parts).encode()
        if self._digest is None:
            try:
                self._digest = keyed_digest(pseudonym_key(), self._domain)
            except Exception as exc:
                raise GrantFailed(
                    f"the record key's pseudonym failed: {failure_text(exc)}"
                ) from exc
        mac = self._digest.copy()
        mac.update("|".join(str(record[k]) for k in self._business_key).encode())
        return mac.hexdigest()[:32].encode()
