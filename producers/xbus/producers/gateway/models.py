"""The gateway's documented shapes: what its OpenAPI description shows. Bodies are not
parsed into these; the catalog checks them, and names every bad field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EventIn(BaseModel):
    """One change event; ``before``/``after`` are records of the dataset."""

    op: str = Field(description="CREATE, UPDATE, DELETE or SNAPSHOT")
    after: dict[str, Any] | None = Field(None, description="The record after the change.")
    before: dict[str, Any] | None = Field(None, description="The record before the change.")
    ts_ms: int | str | None = Field(
        None, description="Event time: epoch milliseconds or ISO 8601 with an offset."
    )
    event_id: str | None = Field(None, description="A UUID; give one to retry safely.")
    trace_id: str | None = None


class BatchIn(BaseModel):
    """A batch of events of one dataset."""

    events: list[EventIn]


class Accepted(BaseModel):
    """Kafka acknowledged these events."""

    event_ids: list[str]


class FieldProblem(BaseModel):
    """What is wrong with one field, by its path in the body."""

    path: str
    message: str


class RecordProblem(BaseModel):
    """The problems of one event, by its index in the batch."""

    index: int
    errors: list[FieldProblem]


class ErrorBody(BaseModel):
    """A refusal: its code, what to do, and the bad events of a batch."""

    code: str
    message: str
    records: list[RecordProblem] = []


class ErrorOut(BaseModel):
    """Every answer other than 202."""

    error: ErrorBody


class AcceptedRecord(BaseModel):
    """One acknowledged event of a partially accepted batch."""

    index: int
    event_id: str


class PartialOut(BaseModel):
    """Partial acceptance: what Kafka acknowledged, and what was refused and why."""

    accepted: list[AcceptedRecord]
    rejected: list[RecordProblem]


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself, as ``model``."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "Invalid JSON, envelope or records; `records` names each bad field by index.",
        401: "Missing, unknown, revoked or expired API key.",
        403: "The key's department does not own this dataset.",
        404: "No such dataset.",
        413: "Body or batch too large (over XBUS_GATEWAY_MAX_BODY_BYTES, _MAX_BATCH or _BURST).",
        429: "The key went over its rate; retry after `Retry-After` seconds.",
        503: "Kafka or the registry did not answer in time; retry with the same event ids.",
    }.items()
}
