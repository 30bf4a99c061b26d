"""Event ids: random (version 4) UUIDs, drawn from the operating system in bulk.

``str(uuid.uuid4())`` asks the kernel for 16 random bytes per event and builds a ``UUID``
object only to print it: 2.3 µs, a fifth of a publisher's time in its profile. Here one
``os.urandom`` call yields the bytes of a few thousand ids, and each id is cut from their
hex form with its version and variant set as ``uuid4`` sets them: ids of the same form from
the same source of randomness, at 0.6 µs each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

BATCH = 4096
"""Ids drawn per call to ``os.urandom`` (64 KiB of randomness)."""

# The variant nibble (RFC 4122: binary 10xx) from any nibble, as uuid4's bit mask makes it.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def _fresh_ids() -> Iterator[str]:
    digits = os.urandom(16 * BATCH).hex()
    variant = _VARIANT
    return iter(
        [
            f"{digits[i : i + 8]}-{digits[i + 8 : i + 12]}-4{digits[i + 13 : i + 16]}-"
            f"{variant[digits[i + 16]]}{digits[i + 17 : i + 20]}-{digits[i + 20 : i + 32]}"
            for i in range(0, 32 * BATCH, 32)
        ]
    )


class _EventIds:
    """The ids not handed out yet. Taking one is a single call of a list iterator, which the
    interpreter does atomically: threads publishing at once never get the same id."""

    def __init__(self) -> None:
        self._next: Callable[[], str] = _fresh_ids().__next__
        # A forked child must not hand out the ids its parent still holds.
        os.register_at_fork(after_in_child=self.discard)

    def discard(self) -> None:
        """Forget the ids drawn so far; the next one comes from fresh randomness."""
        self._next = _fresh_ids().__next__

    def __call__(self) -> str:
        try:
            return self._next()
        except StopIteration:
            self.discard()
            return self._next()


new_event_id: Callable[[], str] = _EventIds()
"""A new random event id, as ``str(uuid.uuid4())`` would give."""
