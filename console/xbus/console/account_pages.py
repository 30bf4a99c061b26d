"""Logging in and out, choosing the language, and the home page of each role."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from xbus.console.accounts import LANGUAGES, Role
from xbus.console.sharing import State
from xbus.console.web import (
    LANGUAGE_COOKIE,
    Who,
    back_to,
    checked_form,
    console_of,
    in_thread,
    new_login_nonce,
    page,
    safe_next,
    same_origin,
    viewer_or_none,
)

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    who = viewer_or_none(request)
    if who is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request, None, "")


def _login_form(request: Request, error: str | None, name: str, status: int = 200) -> Response:
    console = console_of(request)
    nonce = new_login_nonce()
    response = page(
        request,
        "login.html",
        None,
        status_code=status,
        nonce=nonce,
        next=safe_next(request.query_params.get("next")),
        error=error,
        name=name,
    )
    # Double-submit: a login form posted from elsewhere cannot know this cookie's value.
    response.set_cookie(
        console.login_cookie,
        nonce,
        httponly=True,
        secure=console.settings.secure_cookies,
        samesite="strict",
        path="/",
        max_age=3600,
    )
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, chosen, samesite="strict", path="/", max_age=31536000)
    return response


@router.post("/login")
async def log_in(request: Request) -> Response:
    console = console_of(request)
    same_origin(request)
    form = await request.form()
    nonce = str(form.get("nonce") or "")
    cookie = request.cookies.get(console.login_cookie) or ""
    if not nonce or not hmac.compare_digest(nonce, cookie):
        return _login_form(request, "the login form expired: log in again", "", 403)
    name = str(form.get("name") or "").strip().lower()
    found = await in_thread(console.store.log_in, name, str(form.get("password") or ""))
    if found is None:
        message = "unknown account or wrong password"
        return _login_form(request, message, name, 401)
    _, token, _ = found
    response = RedirectResponse(safe_next(str(form.get("next") or "")), status_code=303)
    response.set_cookie(
        console.session_cookie,
        token,
        httponly=True,
        secure=console.settings.secure_cookies,
        samesite="strict",
        path="/",
        max_age=console.settings.session_hours * 3600,
    )
    response.delete_cookie(console.login_cookie, path="/")
    return response


@router.post("/logout")
async def log_out(request: Request, who: Who) -> Response:
    console = console_of(request)
    await checked_form(request, who)
    await in_thread(console.store.log_out, who.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(console.session_cookie, path="/")
    return response


@router.post("/language")
async def change_language(request: Request, who: Who) -> Response:
    console = console_of(request)
    form = await checked_form(request, who)
    language = form.get("language")
    if language in LANGUAGES:
        await in_thread(console.store.set_language, who.account.name, language)
    back = request.headers.get("referer") or "/"
    return RedirectResponse(back_to(back), status_code=303)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Who) -> Response:
    store = console_of(request).store
    account = who.account
    if account.role is Role.OFFICE:
        waiting = store.requests(states=(State.PENDING_REVIEW, State.FAILED))
        overdue = [r for r in store.requests(states=(State.PENDING_OWNER,)) if r.escalated]
        waiting += overdue
    elif account.role is Role.DEPARTMENT:
        waiting = store.requests(department=account.party, states=(State.PENDING_OWNER,))
    elif account.role is Role.SUBSCRIBER:
        waiting = [
            r
            for r in store.requests(subscriber=account.party)
            if r.state in (State.PENDING_REVIEW, State.PENDING_OWNER, State.FAILED)
        ]
    else:
        waiting = store.requests(states=(State.PENDING_REVIEW, State.PENDING_OWNER))
    return page(request, "home.html", who, waiting=waiting)
