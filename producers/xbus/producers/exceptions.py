"""Errors of the producer SDK and the ingest gateway: each says what to do next, and whether
trying again later can help (``retriable``)."""

from __future__ import annotations

from xbus.core import errors
from xbus.core.errors import XbusError
from xbus.core.validation import FieldError


class PublishError(XbusError):
    """An event was not published; Kafka acknowledged nothing for it."""

    reason = "publish_failed"


class UnknownDataset(PublishError):
    """The dataset is not in the catalog."""

    reason = "unknown_dataset"


class ForeignDataset(PublishError):
    """A publisher tried to publish a dataset its department does not own."""

    reason = "foreign_dataset"


class InvalidRecord(PublishError):
    """The event does not match its dataset; ``errors`` name every bad field by path."""

    reason = "invalid_record"

    def __init__(self, dataset: str, errors: list[FieldError]) -> None:
        self.dataset = dataset
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"invalid {dataset} event: {shown}{more}")


class InvalidBatch(PublishError):
    """Records of a batch do not match their dataset; nothing of the batch was published."""

    reason = "invalid_record"

    def __init__(self, dataset: str, errors: dict[int, list[FieldError]]) -> None:
        self.dataset = dataset
        self.errors = errors
        first = min(errors)
        super().__init__(
            f"{len(errors)} invalid record(s) in a batch of {dataset}, nothing was published; "
            f"first, record {first}: " + "; ".join(str(e) for e in errors[first][:5])
        )


class RecordTooLarge(PublishError):
    """An encoded event is larger than Kafka takes; it was not sent."""

    reason = "record_too_large"

    def __init__(self, dataset: str, size: int, limit: int) -> None:
        self.dataset = dataset
        self.size = size
        self.limit = limit
        super().__init__(
            f"an event of {dataset} is {size:,} bytes encoded, more than the {limit:,} bytes "
            "Kafka takes (message.max.bytes); it was not sent: split the record or keep large "
            "content outside the bus"
        )


class SchemaNotRegistered(PublishError):
    """The dataset's current schema is not in the registry: ``xbus schemas register`` first."""

    reason = "schema_not_registered"


class RegistryUnavailable(PublishError, errors.RegistryUnavailable):
    """The schema registry did not answer: a ``PublishError`` to the SDK's callers, and the
    core's ``RegistryUnavailable`` to code that handles it alike for every component."""

    reason = "registry_unavailable"
    retriable = True


class BrokerUnreachable(PublishError):
    """Kafka did not acknowledge within the delivery timeout."""

    reason = "broker_unreachable"
    retriable = True


class DeliveryFailed(PublishError):
    """Kafka refused an event for another reason."""

    reason = "delivery_failed"
