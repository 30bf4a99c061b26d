"""The console's web application: its pages, its static files, how errors are shown, and
the clock that escalates overdue requests and expires lapsed grants."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from xbus.console import (
    account_pages,
    audit_pages,
    catalogue_pages,
    flow_pages,
    grant_pages,
    preview_pages,
    request_pages,
)
from xbus.console.errors import ConsoleError, Forbidden, LoginRequired, NotFound, Refusal
from xbus.console.flow import SharingFlow
from xbus.console.settings import ConsoleSettings
from xbus.console.store import ConsoleStore
from xbus.console.web import (
    Console,
    back_to,
    in_thread,
    login_redirect,
    page,
    secure,
    templates,
    viewer_or_none,
)
from xbus.console.working_days import load_calendar
from xbus.core.catalog import Catalog
from xbus.core.settings import BusSettings

log = logging.getLogger(__name__)


def build_console(flow: SharingFlow, settings: ConsoleSettings) -> FastAPI:
    """The console over ``flow``'s store, catalogue and bus."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clock = asyncio.create_task(_tick(flow, settings.tick_interval))
        try:
            yield
        finally:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock

    app = FastAPI(
        title="xbus office console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.console = Console(flow, flow.store, settings, templates())
    app.mount("/static", StaticFiles(packages=[("xbus.console", "static")]), name="static")
    for module in (
        account_pages,
        catalogue_pages,
        request_pages,
        grant_pages,
        preview_pages,
        flow_pages,
        audit_pages,
    ):
        app.include_router(module.router)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return secure(await call_next(request))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return PlainTextResponse("ok")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET":
            return login_redirect(request)
        return JSONResponse({"error": "log in first"}, status_code=401)

    async def shown(request: Request, heading: str, message: str, status: int) -> Response:
        who = await in_thread(viewer_or_none, request)
        back = back_to(request.headers.get("referer", "")) if request.method != "GET" else None
        return page(request, "error.html", who, status, heading=heading, message=message, back=back)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return await shown(request, "Refused", str(exc), 403)

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        return await shown(request, "Not allowed", str(exc), 403)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return await shown(request, "Not found", str(exc), 404)

    @app.exception_handler(ConsoleError)
    async def mistaken(request: Request, exc: ConsoleError) -> Response:
        return await shown(request, "Not done", str(exc), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return await shown(
            request,
            "Not found" if exc.status_code == 404 else "Not done",
            str(exc.detail),
            exc.status_code,
        )

    return app


async def _tick(flow: SharingFlow, interval: float) -> None:
    """Escalate overdue requests and expire lapsed grants every ``interval`` seconds."""
    while True:
        try:
            changed = await in_thread(flow.tick)
            if changed:
                log.info("requests escalated or expired: %s", changed)
        except Exception:  # the clock goes on: the next round tries again
            log.exception("the console's clock failed; trying again in %s s", interval)
        await asyncio.sleep(interval)


def open_console(bus: BusSettings, settings: ConsoleSettings) -> FastAPI:
    """The console of the bus ``bus`` describes: its tables made if missing, the catalogue
    read from ``bus.schemas_dir``, the calendar from ``settings.calendar_file``."""
    store = ConsoleStore(settings.database())
    store.open()
    flow = SharingFlow(
        store,
        bus,
        Catalog.load(bus.schemas_dir),
        load_calendar(settings.calendar_file),
    )
    return build_console(flow, settings)
