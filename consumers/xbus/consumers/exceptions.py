"""What a connector's target can answer besides success."""

from __future__ import annotations

from typing import Any

from xbus.core.errors import XbusError


class DeliveryError(XbusError):
    """A delivery did not succeed; ``reason`` is a short label for metrics and dead letters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TargetUnavailable(DeliveryError):
    """The target could not take the batch now (timeout, refused connection, 5xx, 429): the
    connector holds its partitions and tries again later, never dead-letters.

    ``done`` says how many of the batch's first deliveries were settled before the failure
    (delivered, or refused for good: those are in ``refused``); ``retry_after`` is the wait
    the target asked for, in seconds, if it asked.
    """

    retriable = True

    def __init__(
        self, reason: str, message: str, *, done: int = 0, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, message)
        self.done = done
        self.retry_after = retry_after
        self.refused: list[tuple[Any, DeliveryRefused]] = []


class DeliveryRefused(DeliveryError):
    """The target refused one delivery for good (a 4xx that will not change, a row the table
    cannot hold): it goes to the subscriber's dead-letter topic and the stream goes on."""


class WebhookSignatureError(XbusError):
    """A webhook request whose signature is missing, forged, or too old to trust."""
