"""Every error xbus raises on purpose, under one root.

``reason`` is a short, stable label (``registry_unavailable``, ``not_wire_format``,
``http_422``...) used alike in metrics, dead-letter headers, audit records and HTTP error
codes; ``retriable`` says whether trying the same thing again later can succeed, so retry
policy reads a flag instead of matching messages.
"""

from __future__ import annotations


class XbusError(Exception):
    """Something a person can act on; the message says what was wrong and where."""

    reason: str = "error"
    retriable: bool = False


class ConfigurationError(XbusError):
    """A setting, file or argument is wrong."""

    reason = "configuration"


class CatalogError(XbusError):
    """A dataset schema is missing or does not carry the metadata xbus needs."""

    reason = "catalog"


class SerializationError(XbusError):
    """Bytes that are not a record this bus can read, or a record that cannot be written
    as its schema says; ``reason`` says which (``not_wire_format``, ``unknown_schema_id``...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class RegistryUnavailable(XbusError):
    """The schema registry did not answer; what is in hand is processed again later."""

    reason = "registry_unavailable"
    retriable = True


class Unacknowledged(XbusError):
    """Kafka did not acknowledge records within the time given, or refused some: none of
    them may be taken as written."""

    reason = "unacknowledged"
    retriable = True


class HttpRefusal(XbusError):
    """An HTTP answer other than success, with its status and error code (``reason``), for
    the gateway and the live stream to send as a JSON error body."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        """Whether the client may try again: throttling and unavailability, not refusals."""
        return self.status == 429 or self.status >= 500
