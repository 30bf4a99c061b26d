"""Every refusal of the gateway, and the one place a publishing error becomes an HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from xbus.core.errors import HttpRefusal
from xbus.core.metrics import EVENTS_REJECTED
from xbus.core.refusals import refusal_response
from xbus.core.validation import FieldError
from xbus.producers.exceptions import (
    BrokerUnreachable,
    ForeignDataset,
    PublishError,
    RecordTooLarge,
    RegistryUnavailable,
    SchemaNotRegistered,
    UnknownDataset,
)


class GatewayError(HttpRefusal):
    """An answer other than 202: its status, its code (``reason``), and the problems of each
    bad event by its index in the request."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        records: dict[int, list[FieldError]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, reason, message, headers)
        self.records = records or {}

    def response(self) -> JSONResponse:
        """The JSON error body every refusal of the bus has, with the bad events named."""
        return refusal_response(self, records=record_problems(self.records))


def record_problems(records: dict[int, list[FieldError]]) -> list[dict[str, Any]]:
    """``[{"index": i, "errors": [{"path", "message"}, ...]}, ...]`` in the order of the
    request: how the gateway names bad events, refused or left out of a partial batch."""
    return [
        {"index": i, "errors": [{"path": e.path, "message": e.message} for e in errs]}
        for i, errs in sorted(records.items())
    ]


def rejected(department: str, dataset: str, error: GatewayError, count: int = 1) -> GatewayError:
    """``error``, once ``count`` events are counted as rejected under its reason."""
    EVENTS_REJECTED.labels(department, dataset, error.reason).inc(count)
    return error


_STATUS: list[tuple[type[PublishError], int]] = [
    (UnknownDataset, 404),
    (ForeignDataset, 403),
    (RecordTooLarge, 413),
    (SchemaNotRegistered, 503),
    (RegistryUnavailable, 503),
    (BrokerUnreachable, 503),
    (PublishError, 502),
]


def from_publish_error(error: BaseException, message: str | None = None) -> GatewayError:
    """The answer to publishing that failed with ``error``: a status by its kind, with
    ``Retry-After`` where trying again can help; 502 for anything unforeseen."""
    message = message or str(error)
    if not isinstance(error, PublishError):
        return GatewayError(502, "publish_failed", message)
    status = next(code for kind, code in _STATUS if isinstance(error, kind))
    headers = {"Retry-After": "5"} if error.retriable else {}
    return GatewayError(status, error.reason, message, headers=headers)


INTERNAL_ERROR = GatewayError(
    500,
    "internal_error",
    "the gateway failed to handle this request; nothing was published; its log says why",
)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def http_error(error: HTTPException) -> GatewayError:
    """A refusal of the web framework (an unknown path, a method a route does not take) as
    the gateway's own error."""
    code = _HTTP_CODES.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    return GatewayError(error.status_code, code, str(error.detail), headers=headers)


def invalid_request(error: RequestValidationError) -> GatewayError:
    """A query parameter FastAPI could not read (``partial=maybe``) as a 400 naming it."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in error.errors()
    )
    return GatewayError(400, "invalid_request", f"the request is not valid: {problems}")
