"""Audit search, for the office and operators: the engine's decisions by subscriber,
dataset or event id, and whether the hash chains hold."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from xbus.console.accounts import Role
from xbus.console.audit_search import WINDOWS, AuditMatch, AuditQuery, search
from xbus.console.errors import Refusal
from xbus.console.web import Who, console_of, page
from xbus.streams.audit import Verdict

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    who: Who,
    subscriber: str = "",
    dataset: str = "",
    event_id: str = "",
    window: str = "24h",
) -> Response:
    if who.account.role not in (Role.OFFICE, Role.OPERATOR):
        raise Refusal("the audit trail is for the office and its operators")
    query = AuditQuery(subscriber.strip(), dataset.strip(), event_id.strip(), window)
    found: list[AuditMatch] = []
    verdict: Verdict | None = None
    problem = ""
    if not query.empty:
        try:
            found, verdict = search(
                console_of(request).flow.settings, query, dt.datetime.now(dt.UTC)
            )
        except LookupError as exc:
            problem = str(exc)
    return page(
        request,
        "audit.html",
        who,
        query=query,
        windows=list(WINDOWS),
        found=found,
        verdict=verdict,
        problem=problem,
    )
