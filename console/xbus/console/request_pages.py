"""The sharing requests' pages: the list, filing one, and one request with its steps, the
grant it makes and the forms of whoever takes the next step."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from xbus.console.accounts import Account, Role
from xbus.console.catalogue import PROTECTED, fields_of
from xbus.console.errors import ConsoleError, NotFound, Refusal
from xbus.console.flow import SharingFlow, sees_source_values
from xbus.console.sharing import (
    Action,
    FieldRequest,
    SharingRequest,
    State,
    Terms,
    can_request,
    restrict_rows,
)
from xbus.console.web import Who, checked_form, console_of, in_thread, page
from xbus.core.envelope import Op
from xbus.streams.masks import MASK_TYPES

router = APIRouter()

# The masks a request or an answer may choose: every mask a grant knows.
MASK_CHOICES = MASK_TYPES
DURATIONS = (30, 90, 180, 365, 730)


def visible(account: Account, request: SharingRequest) -> bool:
    """Whether ``account`` may see ``request``: the office and operators see every request,
    a subscriber its own, a department those on its datasets."""
    if account.role in (Role.OFFICE, Role.OPERATOR):
        return True
    if account.role is Role.SUBSCRIBER:
        return account.party == request.subscriber
    return account.party == request.department


def _requests_of(flow: SharingFlow, account: Account) -> list[SharingRequest]:
    if account.role is Role.SUBSCRIBER:
        return flow.store.requests(subscriber=account.party)
    if account.role is Role.DEPARTMENT:
        return flow.store.requests(department=account.party)
    return flow.store.requests()


@router.get("/requests", response_class=HTMLResponse)
def request_list(request: Request, who: Who) -> Response:
    flow = console_of(request).flow
    return page(request, "requests.html", who, requests=_requests_of(flow, who.account))


@router.get("/requests/new", response_class=HTMLResponse)
def new_request(request: Request, who: Who, dataset: str, renews: int | None = None) -> Response:
    flow = console_of(request).flow
    found = flow.dataset(dataset)
    can_request(who.account, found)
    earlier = None
    if renews is not None:
        earlier = flow.store.request(renews, with_steps=False)
        if not visible(who.account, earlier):
            raise NotFound(f"there is no request {renews}")
    return page(
        request,
        "request_new.html",
        who,
        dataset=found,
        fields=fields_of(found.schema),
        masks=MASK_CHOICES,
        durations=DURATIONS,
        operations=[op.value for op in Op],
        earlier=earlier,
    )


@router.post("/requests")
async def file_request(request: Request, who: Who) -> Response:
    flow = console_of(request).flow
    form = await checked_form(request, who)
    terms = _terms(form, prefix="ask")
    renews = int(form["renews"]) if form.get("renews") else None
    number = await in_thread(
        flow.file,
        who.account,
        str(form.get("dataset") or ""),
        terms,
        purpose=str(form.get("purpose") or ""),
        scenario=str(form.get("scenario") or ""),
        legal_basis=str(form.get("legal_basis") or ""),
        renews=renews,
    )
    return RedirectResponse(f"/requests/{number}?done=filed", status_code=303)


@router.get("/requests/{number}", response_class=HTMLResponse)
def request_page(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    found = flow.store.request(number)
    if not visible(who.account, found):
        raise NotFound(f"there is no request {number}")
    dataset = flow.dataset(found.dataset)
    terms = found.granted or found.asked
    draft = None
    if found.state in (State.PENDING_REVIEW, State.PENDING_OWNER, State.FAILED):
        draft = flow.draft(found, terms)
    classes = dataset.classifications
    return page(
        request,
        "request.html",
        who,
        r=found,
        draft=draft,
        classes=classes,
        protected=PROTECTED,
        masks=MASK_CHOICES,
        durations=[d for d in DURATIONS if d <= found.asked.days] or [found.asked.days],
        may=_may(who.account, found),
        notice=_notice(request.query_params.get("done")),
    )


def _may(account: Account, r: SharingRequest) -> dict[str, bool]:
    owner = account.role is Role.DEPARTMENT and account.party == r.department
    office = account.role is Role.OFFICE
    return {
        "review": office and r.state is State.PENDING_REVIEW,
        "answer": owner and r.state is State.PENDING_OWNER,
        "apply": office and r.state is State.FAILED,
        "revoke": (office or owner) and r.state is State.APPLIED,
        "preview": sees_source_values(account, r.dataset)
        and r.state in (State.PENDING_REVIEW, State.PENDING_OWNER, State.FAILED),
        "renew": account.role is Role.SUBSCRIBER
        and account.party == r.subscriber
        and r.state is State.APPLIED,
    }


def _notice(done: str | None) -> str | None:
    return {
        "filed": "Request filed: the office reviews it within 2 working days.",
        "reviewed": "Review recorded.",
        "answered": "Answer recorded.",
        "applied": "The grant was applied.",
        "revoked": "The grant was revoked: deliveries stop within seconds.",
    }.get(done or "")


@router.post("/requests/{number}/review")
async def review(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    form = await checked_form(request, who)
    decision = form.get("decision")
    if decision not in ("pass", "refuse"):
        raise ConsoleError("a review passes the request or refuses it")
    await in_thread(
        flow.review,
        who.account,
        number,
        passed=decision == "pass",
        reason=str(form.get("reason") or ""),
    )
    return RedirectResponse(f"/requests/{number}?done=reviewed", status_code=303)


@router.post("/requests/{number}/answer")
async def answer(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    form = await checked_form(request, who)
    reason = str(form.get("reason") or "")
    if form.get("decision") == "refuse":
        await in_thread(flow.answer, who.account, number, action=Action.REFUSE, reason=reason)
        return RedirectResponse(f"/requests/{number}?done=answered", status_code=303)
    if form.get("decision") != "approve":
        raise ConsoleError("an answer approves the request or refuses it")
    current = await in_thread(flow.store.request, number, with_steps=False)
    granted = _terms(form, prefix="grant", asked=current.asked)
    action = Action.APPROVE if _as_asked(current.asked, granted) else Action.NARROW
    await in_thread(flow.answer, who.account, number, action=action, granted=granted, reason=reason)
    return RedirectResponse(f"/requests/{number}?done=answered", status_code=303)


@router.post("/requests/{number}/apply")
async def apply(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    await checked_form(request, who)
    if who.account.role is not Role.OFFICE:
        raise Refusal("only the office applies grants")
    await in_thread(flow.apply, number, who.account)
    return RedirectResponse(f"/requests/{number}?done=applied", status_code=303)


@router.post("/requests/{number}/revoke")
async def revoke(request: Request, who: Who, number: int) -> Response:
    flow = console_of(request).flow
    form = await checked_form(request, who)
    await in_thread(flow.revoke, who.account, number, str(form.get("reason") or ""))
    return RedirectResponse(f"/requests/{number}?done=revoked", status_code=303)


def _as_asked(asked: Terms, granted: Terms) -> bool:
    def shape(terms: Terms) -> Any:
        return (
            sorted((f.path, repr(f.mask)) for f in terms.fields),
            terms.rows,
            terms.days,
            sorted(terms.operations),
        )

    return bool(shape(asked) == shape(granted))


def _terms(form: dict[str, Any], *, prefix: str, asked: Terms | None = None) -> Terms:
    """The terms a request form or an answer form gives.

    Each field is ``<prefix>:<path>`` (checked: wanted), ``mask:<path>`` (a mask type, or
    empty for none), ``mask_n:<path>`` (its parameter: characters shown, or the rounding
    step) and, in an answer, ``unmasked:<path>`` (the owner approves it in clear)."""
    fields = []
    for key in form:
        if not key.startswith(f"{prefix}:"):
            continue
        path = key.split(":", 1)[1]
        mask_type = str(form.get(f"mask:{path}") or "")
        mask: dict[str, object] | None = None
        if mask_type:
            if mask_type not in MASK_CHOICES:
                raise ConsoleError(f"{path}: unknown mask {mask_type!r}")
            mask = {"type": mask_type}
            parameter = str(form.get(f"mask_n:{path}") or "").strip()
            if mask_type in ("show_first", "show_last"):
                try:
                    mask["n"] = int(parameter or "4")
                except ValueError as exc:
                    raise ConsoleError(f"{path}: characters shown is a whole number") from exc
            elif mask_type == "round":
                mask["step"] = parameter or "1"
        fields.append(FieldRequest(path, mask, bool(form.get(f"unmasked:{path}"))))
    operations = form.get("operations") or []
    if isinstance(operations, str):
        operations = [operations]
    try:
        days = int(str(form.get("days") or "0"))
    except ValueError as exc:
        raise ConsoleError("the duration is a number of days") from exc
    if asked is None:
        rows = str(form.get("rows") or "").strip() or None
    else:
        rows = restrict_rows(asked.rows, str(form.get("rows_further") or ""))
    return Terms(
        fields=tuple(fields),
        rows=rows,
        days=days,
        operations=tuple(operations) or (asked.operations if asked else ()),
    )
