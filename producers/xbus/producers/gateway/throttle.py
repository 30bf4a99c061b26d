"""Per-key rate limits of the gateway: a token bucket per API key, counted in events."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    level: float
    updated: float


class KeyRates:
    """A bucket per key id, refilled at ``rate`` events a second up to ``burst``; a rate of 0
    admits everything."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, cost: int) -> int:
        """Take ``cost`` events from the key's bucket: 0 if they were there (and are now
        spent), else the whole seconds to wait until they are (nothing is spent then). A cost
        over ``burst`` can never be taken; the caller refuses it before asking."""
        if self.rate <= 0:
            return 0
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
        bucket.level = min(float(self.burst), bucket.level + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.level >= cost:
            bucket.level -= cost
            return 0
        return max(1, math.ceil((cost - bucket.level) / self.rate))
