"""A grant's live flow: counts, lag and errors, updated without a reload (Server-Sent
Events that htmx swaps into the page)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from xbus.console.errors import NotFound
from xbus.console.flow_meter import DeliveryClock, GrantFlow, grant_flow
from xbus.console.grant_pages import grant_visible
from xbus.console.language import translate
from xbus.console.settings import ConsoleSettings
from xbus.console.web import Who, console_of, in_thread, language_of, page
from xbus.console.working_days import SHANGHAI
from xbus.core.metric_sources import BusReader, Endpoint, EndpointsReader, PrometheusReader
from xbus.streams.grants import Grant

router = APIRouter()


def metrics_reader(settings: ConsoleSettings) -> BusReader | None:
    """Where the flow is read: Prometheus if configured, else the endpoints; None: neither."""
    if settings.prometheus_url:
        return PrometheusReader(settings.prometheus_url, "1m")
    endpoints = [e.strip() for e in settings.metrics_endpoints.split(",") if e.strip()]
    if endpoints:
        return EndpointsReader([Endpoint.parse(e) for e in endpoints], sample_seconds=1.0)
    return None


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _grant(request: Request, who: Who, grant_id: str) -> Grant:
    compiled = console_of(request).flow.grant_in_force(grant_id)
    if compiled is None or not grant_visible(who.account, compiled.grant):
        raise NotFound(f"no grant {grant_id} is in force")
    return compiled.grant


@router.get("/grants/{grant_id}/flow", response_class=HTMLResponse)
def flow_page(request: Request, who: Who, grant_id: str) -> Response:
    grant = _grant(request, who, grant_id)
    return page(request, "flow.html", who, grant=grant, flow=None)


@router.get("/grants/{grant_id}/flow/stream")
async def flow_stream(request: Request, who: Who, grant_id: str) -> Response:
    grant = await in_thread(_grant, request, who, grant_id)
    console = console_of(request)
    language = language_of(request, who)
    template = console.templates.get_template("flow_numbers.html")

    async def events() -> AsyncIterator[bytes]:
        reader = metrics_reader(console.settings)
        clock = DeliveryClock()
        try:
            # The stream ends when the viewer logs out or the session expires.
            while not await request.is_disconnected() and await in_thread(
                console.store.session, who.token
            ):
                flow: GrantFlow | None = None
                problem = ""
                if reader is None:
                    problem = "no metrics source: set XBUS_CONSOLE_PROMETHEUS_URL"
                else:
                    try:
                        reading = await in_thread(reader.read)
                        flow = grant_flow(reading, grant.subscriber, grant.dataset)
                        last = clock.see(flow.delivered, reading.taken_at)
                        flow = replace(flow, last_delivery=last)
                    except Exception as exc:  # shown on the page; the stream goes on
                        problem = str(exc) or type(exc).__name__
                html = template.render(
                    flow=flow,
                    problem=problem,
                    t=lambda text, **values: translate(language, text, **values),
                    last_delivery=_when(flow.last_delivery if flow else None),
                )
                data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                yield f"event: flow\n{data}\n".encode()
                await asyncio.sleep(console.settings.flow_interval)
        finally:
            if reader is not None:
                await in_thread(reader.close)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
