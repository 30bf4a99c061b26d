"""The contract every sink keeps with the connector runtime: deliver a batch in order, say
what the target refused for good, and raise ``TargetUnavailable`` for what it cannot take
now. Each sink (``webhook``, ``postgres``, ``file``) implements it in its own module."""

from __future__ import annotations

from typing import Protocol

from xbus.consumers.delivery import Delivery
from xbus.consumers.exceptions import DeliveryRefused

Position = tuple[str, int]
"""A partition of a subscriber's topic: ``(topic, partition)``."""


class Sink(Protocol):
    """Where a connector delivers; ``connector`` names it in metrics and consumer groups."""

    connector: str

    def deliver(self, batch: list[Delivery]) -> list[tuple[Delivery, DeliveryRefused]]:
        """Deliver the batch in order; return what the target refused for good; raise
        ``TargetUnavailable`` (saying how many were done) if it cannot take the rest now."""
        ...

    def positions(self, partitions: list[Position]) -> dict[Position, int]:
        """The next offset to read of each partition, for sinks that keep their own position
        with the data (PostgreSQL); an empty dict lets Kafka's committed offsets decide."""
        ...

    def close(self) -> None:
        """Release the target's resources."""
        ...
