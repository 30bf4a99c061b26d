"""What would a subscriber see, for a grant in force or the draft of a request under review:
for the office and the owning department only, never for a subscriber or an operator."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from xbus.console.errors import NotFound, Refusal
from xbus.console.flow import sees_source_values
from xbus.console.sharing import State
from xbus.console.web import Who, console_of, page

router = APIRouter()


def _allowed(who: Who, dataset: str) -> None:
    if not sees_source_values(who.account, dataset):
        raise Refusal(
            "only the office and the department that owns the dataset see its source values"
        )


@router.get("/grants/{grant_id}/preview", response_class=HTMLResponse)
def grant_preview(request: Request, who: Who, grant_id: str) -> Response:
    flow = console_of(request).flow
    compiled = flow.grant_in_force(grant_id)
    if compiled is None:
        raise NotFound(f"no grant {grant_id} is in force")
    _allowed(who, compiled.grant.dataset)
    return page(
        request,
        "preview.html",
        who,
        grant=compiled.grant,
        what=f"{grant_id} v{compiled.version}",
        events=flow.preview(compiled.grant),
        back=f"/grants#grant-{grant_id}",
    )


@router.get("/requests/{number}/preview", response_class=HTMLResponse)
def draft_preview(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    found = flow.store.request(number, with_steps=False)
    _allowed(who, found.dataset)
    if found.state not in (State.PENDING_REVIEW, State.PENDING_OWNER, State.FAILED):
        raise NotFound(f"request {number} has no draft under review")
    draft = flow.draft(found, found.granted or found.asked)
    return page(
        request,
        "preview.html",
        who,
        grant=draft.grant,
        what=f"{found.reference} (draft)",
        events=flow.preview(draft.grant),
        back=f"/requests/{number}",
    )
