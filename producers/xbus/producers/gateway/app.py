"""The ingest gateway: change events over HTTP for departments that cannot run a Kafka
client.

``POST /v1/datasets/{department}/{dataset}/events`` takes one event, ``.../events/batch`` a
batch (``{"events": [...]}``). The answer is 202 with the event ids only once Kafka has
acknowledged every event; 400 names each bad field of each bad record, and nothing of a bad
batch is published unless the caller asked for partial acceptance (``?partial=true``), in
which case the answer says, record by record, what was accepted and what was not. 401 is a
missing or unknown key, 403 a key of another department, 404 an unknown dataset, 413 an
oversize body or batch, 429 a key over its rate (retry after ``Retry-After`` seconds), 503 a
Kafka or registry that did not answer in time (retry with the same ``event_id`` values: each
event is applied once downstream).

Every route but ``/healthz`` needs a key, ``/openapi.json`` too unless the gateway was started
with ``XBUS_GATEWAY_PUBLIC_DOCS=true`` (which also serves ``/docs``). Metrics are served on a
port of their own (``xbus run gateway --metrics-port``), not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from xbus.core.catalog import Catalog
from xbus.core.settings import BusSettings
from xbus.producers.gateway.admission import Admission
from xbus.producers.gateway.errors import (
    INTERNAL_ERROR,
    GatewayError,
    http_error,
    invalid_request,
    rejected,
)
from xbus.producers.gateway.ingest import Ingest
from xbus.producers.gateway.keys import gateway_keys
from xbus.producers.gateway.models import (
    ERROR_RESPONSES,
    Accepted,
    BatchIn,
    EventIn,
    PartialOut,
    request_body,
)
from xbus.producers.gateway.settings import GatewaySettings
from xbus.producers.gateway.throttle import KeyRates


def build_gateway(
    bus: BusSettings, settings: GatewaySettings | None = None, catalog: Catalog | None = None
) -> FastAPI:
    """The gateway's ASGI app: the two publishing routes, ``/healthz``, and the OpenAPI
    description at ``/openapi.json`` (for a key, or for anyone and browsable at ``/docs`` with
    ``public_docs``)."""
    settings = settings or GatewaySettings()
    catalog = catalog or Catalog.load(bus.schemas_dir)
    admission = Admission(
        gateway_keys(settings.keys_file, settings.reload_interval),
        catalog,
        settings.max_body_bytes,
        KeyRates(settings.rate, settings.burst),
    )
    ingest = Ingest(bus, catalog, settings.delivery_timeout)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await ingest.close()

    app = FastAPI(
        lifespan=lifespan,
        title="xbus ingest gateway",
        version="1",
        description=__doc__,
        responses=ERROR_RESPONSES,
        openapi_url="/openapi.json" if settings.public_docs else None,
        docs_url="/docs" if settings.public_docs else None,
        redoc_url=None,
    )

    # Every answer other than 202 is the gateway's JSON error, even where FastAPI or
    # Starlette refuse a request themselves, or the gateway fails.
    @app.exception_handler(GatewayError)
    async def refused(_: Request, exc: GatewayError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_refused(_: Request, exc: HTTPException) -> JSONResponse:
        return http_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(exc).response()

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the gateway's log (the server logs it after this answer).
        return INTERNAL_ERROR.response()

    @app.post(
        "/v1/datasets/{department}/{dataset}/events",
        status_code=202,
        response_model=Accepted,
        openapi_extra=request_body(EventIn),
    )
    async def publish_one(department: str, dataset: str, request: Request) -> JSONResponse:
        """Publish one change event; 202 once Kafka acknowledged it."""
        admitted = await admission.admit(request, department, dataset)
        return await ingest.publish(department, dataset, [admitted.body], partial=False, prefix="")

    @app.post(
        "/v1/datasets/{department}/{dataset}/events/batch",
        status_code=202,
        response_model=Accepted | PartialOut,
        openapi_extra=request_body(BatchIn),
    )
    async def publish_batch(
        department: str, dataset: str, request: Request, partial: bool = False
    ) -> JSONResponse:
        """Publish a batch: all or nothing, unless ``partial=true``."""
        admitted = await admission.admit(request, department, dataset)
        body = admitted.body
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise GatewayError(
                400, "invalid_batch", 'expected {"events": [...]} with at least one event'
            )
        if len(events) > settings.max_batch:
            raise rejected(
                department,
                dataset,
                GatewayError(
                    413,
                    "too_large",
                    f"{len(events)} events in one batch; at most {settings.max_batch}",
                ),
                len(events),
            )
        admission.charge(admitted.holder, department, dataset, len(events), taken=1)
        return await ingest.publish(
            department, dataset, events, partial=partial, prefix="events[{}]."
        )

    if not settings.public_docs:

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> JSONResponse:
            """The OpenAPI description, for a caller with a key."""
            admission.authenticate(request)
            return JSONResponse(app.openapi())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    return app
