"""Errors of the producer SDK."""

from xbus.errors import XbusError


class PublishError(XbusError):
    """An event could not be published; nothing was acknowledged for it."""


class ForeignDatasetError(PublishError):
    """A publisher tried to publish a dataset its department does not own."""


class DeliveryFailed(PublishError):
    """Kafka did not acknowledge one or more events."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        shown = "; ".join(f"{event_id}: {reason}" for event_id, reason in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} event(s) were not acknowledged by Kafka: {shown}{more}")
