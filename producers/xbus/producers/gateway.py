"""The ingest gateway: change events over HTTP for departments that cannot run a Kafka
client.

``POST /v1/datasets/{department}/{dataset}/events`` takes one event, ``.../events/batch`` a
batch (``{"events": [...]}``). The answer is 202 with the event ids only once Kafka has
acknowledged every event; 400 names each bad field of each bad record, and nothing of a bad
batch is published unless the caller asked for partial acceptance (``?partial=true``), in
which case the answer says, record by record, what was accepted and what was not. 401 is a
missing or unknown key, 403 a key of another department, 404 an unknown dataset, 413 an
oversize body or batch, 503 a Kafka or registry that did not answer in time (retry with the
same ``event_id`` values: each event is applied once downstream).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from xbus.core.catalog import Catalog
from xbus.core.errors import CatalogError
from xbus.core.metrics import EVENTS_REJECTED
from xbus.core.settings import BusSettings, home_dir
from xbus.core.validation import FieldError
from xbus.producers.exceptions import (
    BrokerUnreachable,
    ForeignDataset,
    PublishError,
    RegistryUnavailable,
    SchemaNotRegistered,
    UnknownDataset,
)
from xbus.producers.gateway_keys import GatewayKeys
from xbus.producers.jsonevents import loads, spec_from_json
from xbus.producers.publisher import EventSpec, Publisher, Receipt


class GatewaySettings(BaseSettings):
    """The gateway's own settings (environment prefix ``XBUS_GATEWAY_``)."""

    model_config = SettingsConfigDict(env_prefix="XBUS_GATEWAY_", extra="ignore")

    keys_file: Path = Field(default_factory=lambda: home_dir() / "gateway-keys.toml")
    max_body_bytes: int = 1024 * 1024
    max_batch: int = 1000
    delivery_timeout: float = 10.0


# -- the documented shapes (the OpenAPI description; bodies are checked by the catalog) ----


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
    path: str
    message: str


class RecordProblem(BaseModel):
    index: int
    errors: list[FieldProblem]


class ErrorBody(BaseModel):
    code: str
    message: str
    records: list[RecordProblem] = []


class ErrorOut(BaseModel):
    error: ErrorBody


class AcceptedRecord(BaseModel):
    index: int
    event_id: str


class PartialOut(BaseModel):
    """Partial acceptance: what Kafka acknowledged, and what was refused and why."""

    accepted: list[AcceptedRecord]
    rejected: list[RecordProblem]


class GatewayError(Exception):
    """An answer other than 202, with its status, code and per-record problems."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        records: dict[int, list[FieldError]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.records = records or {}
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "code": self.code,
                "message": str(self),
                "records": [
                    {"index": i, "errors": [{"path": e.path, "message": e.message} for e in errs]}
                    for i, errs in sorted(self.records.items())
                ],
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


# The one place a publishing error becomes an HTTP answer.
_STATUS: list[tuple[type[PublishError], int]] = [
    (UnknownDataset, 404),
    (ForeignDataset, 403),
    (SchemaNotRegistered, 503),
    (RegistryUnavailable, 503),
    (BrokerUnreachable, 503),
    (PublishError, 502),
]


def _from_publish_error(exc: PublishError) -> GatewayError:
    status = next(code for kind, code in _STATUS if isinstance(exc, kind))
    headers = {"Retry-After": "5"} if exc.retriable else {}
    return GatewayError(status, exc.reason, str(exc), headers=headers)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "Invalid JSON, envelope or records; `records` names each bad field by index.",
        401: "Missing or unknown API key.",
        403: "The key's department does not own this dataset.",
        404: "No such dataset.",
        413: "Body or batch too large.",
        503: "Kafka or the registry did not answer in time; retry with the same event ids.",
    }.items()
}


def build_gateway(
    bus: BusSettings, settings: GatewaySettings | None = None, catalog: Catalog | None = None
) -> FastAPI:
    """The gateway's ASGI app."""
    settings = settings or GatewaySettings()
    catalog = catalog or Catalog.load(bus.schemas_dir)
    keys = GatewayKeys.load(settings.keys_file)
    publishers: dict[str, Publisher] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for publisher in publishers.values():
            await asyncio.to_thread(publisher.close)

    app = FastAPI(
        lifespan=lifespan,
        title="xbus ingest gateway",
        version="1",
        description=__doc__,
        responses=_ERROR_RESPONSES,
    )
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return exc.response()

    def publisher_for(department: str) -> Publisher:
        publisher = publishers.get(department)
        if publisher is None:
            publisher = Publisher(
                department,
                system="ingest-gateway",
                settings=bus,
                catalog=catalog,
                origin="gateway",
                delivery_timeout=settings.delivery_timeout,
            )
            publishers[department] = publisher
        return publisher

    def reject(department: str, dataset: str, reason: str, count: int = 1) -> None:
        EVENTS_REJECTED.labels(department, dataset, reason).inc(count)

    async def admit(request: Request, department: str, dataset: str) -> Any:
        """Authenticate, authorise, bound the size and parse the body."""
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        caller = keys.department_of(key) if key else None
        if caller is None:
            reject(department, dataset, "unauthorized")
            raise GatewayError(
                401,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            owned = catalog.get(department, dataset)
        except CatalogError:
            owners = [d.department for d in catalog if d.name == dataset]
            if caller not in owners:
                reject(department, dataset, "unknown_dataset")
                raise GatewayError(
                    404, "unknown_dataset", f"no dataset {department}.{dataset}"
                ) from None
            owned = catalog.get(caller, dataset)
        if caller != owned.department or caller != department:
            reject(department, dataset, "forbidden")
            raise GatewayError(
                403,
                "forbidden",
                f"this key speaks for {caller}, which does not own {department}.{dataset}",
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            reject(department, dataset, "too_large")
            raise GatewayError(
                413,
                "too_large",
                f"the body has {declared} bytes; at most {settings.max_body_bytes}",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                reject(department, dataset, "too_large")
                raise GatewayError(
                    413, "too_large", f"the body exceeds {settings.max_body_bytes} bytes"
                )
        try:
            return loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reject(department, dataset, "invalid_json")
            raise GatewayError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None

    async def publish(
        department: str, dataset: str, objects: list[Any], partial: bool, prefix: str
    ) -> JSONResponse:
        errors: dict[int, list[FieldError]] = {}
        specs: dict[int, EventSpec] = {}
        for index, obj in enumerate(objects):
            spec, found = spec_from_json(obj, prefix.format(index))
            if spec is None:
                errors[index] = found
            else:
                specs[index] = spec
        publisher = publisher_for(department)
        try:
            events, invalid = await asyncio.to_thread(
                publisher.check_batch, dataset, list(specs.values())
            )
        except PublishError as exc:
            reject(department, dataset, exc.reason, len(objects))
            raise _from_publish_error(exc) from None
        indexes = list(specs)
        for position, found in invalid.items():
            index = indexes[position]
            errors[index] = [FieldError(prefix.format(index) + e.path, e.message) for e in found]
        all_or_nothing = not partial or len(errors) == len(objects)
        if errors:
            # Without partial acceptance, the valid events of the batch are refused too.
            reject(
                department,
                dataset,
                "invalid_record",
                len(objects) if all_or_nothing else len(errors),
            )
        if errors and all_or_nothing:
            raise GatewayError(
                400,
                "invalid_record",
                f"{len(errors)} of {len(objects)} event(s) are invalid; nothing was published",
                records=errors,
            )
        good = [(indexes[p], e) for p, e in enumerate(events) if p not in invalid]
        futures: list[Future[Receipt]] = await asyncio.to_thread(
            publisher.produce_checked, dataset, [e for _, e in good]
        )
        outcomes = await asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            acknowledged = [r.event_id for r in outcomes if isinstance(r, Receipt)]
            error = failed[0]
            gateway_error = (
                _from_publish_error(error)
                if isinstance(error, PublishError)
                else GatewayError(502, "publish_failed", str(error))
            )
            gateway_error.args = (
                f"{len(failed)} of {len(futures)} event(s) were not "
                f"acknowledged ({error}); acknowledged: "
                f"{', '.join(acknowledged) or 'none'}",
            )
            raise gateway_error
        receipts = [o for o in outcomes if isinstance(o, Receipt)]
        if not errors:
            return JSONResponse({"event_ids": [r.event_id for r in receipts]}, status_code=202)
        return JSONResponse(
            {
                "accepted": [
                    {"index": i, "event_id": r.event_id}
                    for (i, _), r in zip(good, receipts, strict=True)
                ],
                "rejected": [
                    {"index": i, "errors": [{"path": e.path, "message": e.message} for e in errs]}
                    for i, errs in sorted(errors.items())
                ],
            },
            status_code=202,
        )

    @app.post(
        "/v1/datasets/{department}/{dataset}/events",
        status_code=202,
        response_model=Accepted,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EventIn.model_json_schema()}},
            }
        },
    )
    async def publish_one(department: str, dataset: str, request: Request) -> JSONResponse:
        """Publish one change event; 202 once Kafka acknowledged it."""
        body = await admit(request, department, dataset)
        return await publish(department, dataset, [body], partial=False, prefix="")

    @app.post(
        "/v1/datasets/{department}/{dataset}/events/batch",
        status_code=202,
        response_model=Accepted | PartialOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BatchIn.model_json_schema()}},
            }
        },
    )
    async def publish_batch(
        department: str, dataset: str, request: Request, partial: bool = False
    ) -> JSONResponse:
        """Publish a batch: all or nothing, unless ``partial=true``."""
        body = await admit(request, department, dataset)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise GatewayError(
                400, "invalid_batch", 'expected {"events": [...]} with at least one event'
            )
        if len(events) > settings.max_batch:
            reject(department, dataset, "too_large")
            raise GatewayError(
                413, "too_large", f"{len(events)} events in one batch; at most {settings.max_batch}"
            )
        return await publish(department, dataset, events, partial, prefix="events[{}].")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    return app
