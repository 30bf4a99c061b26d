"""The grants in force: purpose, validity and the time left, whichever way each came in
(a console approval or ``xbus grants apply``), and renewal from the same page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from xbus.console.accounts import Account, Role
from xbus.console.flow import sees_source_values
from xbus.console.sharing import State
from xbus.console.web import Who, console_of, page
from xbus.streams.grants import Grant

router = APIRouter()


def grant_visible(account: Account, grant: Grant) -> bool:
    """The office and operators see every grant; a department those on its datasets; a
    subscriber its own."""
    if account.role in (Role.OFFICE, Role.OPERATOR):
        return True
    if account.role is Role.SUBSCRIBER:
        return grant.subscriber == account.party
    return grant.department == account.party


@router.get("/grants", response_class=HTMLResponse)
def grants(request: Request, who: Who) -> Response:
    flow = console_of(request).flow
    in_force = [
        c for c in flow.grants_in_force(fresh=True).values() if grant_visible(who.account, c.grant)
    ]
    in_force.sort(key=lambda c: (c.grant.dataset, c.grant.subscriber))
    applied = {r.grant_id: r for r in flow.store.requests(states=(State.APPLIED,)) if r.grant_id}
    previewable = {
        c.grant.grant for c in in_force if sees_source_values(who.account, c.grant.dataset)
    }
    return page(
        request, "grants.html", who, grants=in_force, requests=applied, previewable=previewable
    )
