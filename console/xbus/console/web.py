"""What every page of the console shares: who is looking (the session), the CSRF check on
every form, the language, the templates, and how a refusal or a mistake is shown.

A session is a random token in a cookie (``Secure``, ``HttpOnly``, ``SameSite=Strict``,
``__Host-`` prefixed); only its SHA-256 is stored, with the account and the session's CSRF
token. A cookie that was changed, expired or logged out finds no session: the page asks for
a login again. Every POST carries the CSRF token (a hidden field, or the ``X-CSRF-Token``
header htmx sends) and is refused without it; a request from another origin is refused
before that.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from xbus.console.accounts import LANGUAGES, Account
from xbus.console.errors import Forbidden, LoginRequired
from xbus.console.flow import SharingFlow
from xbus.console.language import translate
from xbus.console.settings import ConsoleSettings
from xbus.console.store import ConsoleStore
from xbus.console.working_days import SHANGHAI

LANGUAGE_COOKIE = "xbus-language"


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: the account, its session token and CSRF token."""

    account: Account
    token: str
    csrf: str


@dataclass
class Console:
    """The console's parts, as the pages reach them (``request.app.state.console``)."""

    flow: SharingFlow
    store: ConsoleStore
    settings: ConsoleSettings
    templates: Environment

    @property
    def session_cookie(self) -> str:
        return "__Host-xbus-session" if self.settings.secure_cookies else "xbus-session"

    @property
    def login_cookie(self) -> str:
        return "__Host-xbus-login" if self.settings.secure_cookies else "xbus-login"


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("xbus.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = lambda value: (
        value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else ""
    )
    env.filters["iso"] = lambda value: value.isoformat() if value else ""
    env.globals["time_left"] = time_left
    return env


def time_left(until: dt.datetime | None, now: dt.datetime | None = None) -> dict[str, int]:
    """Days, hours and minutes from ``now`` to ``until``, and whether it has passed."""
    if until is None:
        return {}
    seconds = int((until - (now or dt.datetime.now(dt.UTC))).total_seconds())
    overdue = seconds < 0
    seconds = abs(seconds)
    return {
        "overdue": int(overdue),
        "days": seconds // 86400,
        "hours": seconds % 86400 // 3600,
        "minutes": seconds % 3600 // 60,
    }


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def viewer_or_none(request: Request) -> Viewer | None:
    console = console_of(request)
    token = request.cookies.get(console.session_cookie)
    if not token:
        return None
    found = console.store.session(token)
    if found is None:
        return None
    return Viewer(found[0], token, found[1])


def viewer(request: Request) -> Viewer:
    """The logged-in viewer; ``LoginRequired`` if there is no live session."""
    found = viewer_or_none(request)
    if found is None:
        raise LoginRequired()
    return found


# A page's viewer: the logged-in account, or ``LoginRequired``.
Who = Annotated[Viewer, Depends(viewer)]


async def checked_form(request: Request, who: Viewer) -> dict[str, Any]:
    """The form of a POST by ``who``, once its origin and CSRF token are checked;
    ``Forbidden`` otherwise. Lists for repeated fields."""
    same_origin(request)
    form = await request.form()
    sent = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
    if not sent or not hmac.compare_digest(sent, who.csrf):
        raise Forbidden("this form has no valid CSRF token: reload the page and send it again")
    values: dict[str, Any] = {}
    for key in form:
        items = form.getlist(key)
        values[key] = [str(i) for i in items] if len(items) > 1 else str(items[0])
    return values


def same_origin(request: Request) -> None:
    """``Forbidden`` when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null" and request.headers.get("sec-fetch-site") is None:
        return
    mine = f"{request.url.scheme}://{request.url.netloc}"
    if urlsplit(origin)._replace(path="").geturl() != mine:
        raise Forbidden(f"a form from {origin} is not taken here")


def language_of(request: Request, who: Viewer | None) -> str:
    if who is not None:
        return who.account.language
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in LANGUAGES else "zh-CN"


def page(
    request: Request,
    template: str,
    who: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered in the viewer's language, with what every page needs."""
    console = console_of(request)
    language = language_of(request, who)
    html = console.templates.get_template(template).render(
        request=request,
        viewer=who.account if who else None,
        csrf=who.csrf if who else "",
        language=language,
        languages=LANGUAGES,
        t=lambda text, **values: translate(language, text, **values),
        now=dt.datetime.now(dt.UTC),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(function, *args, **kwargs)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path of this site only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and line breaks from a URL: "/\t/elsewhere" would become "//elsewhere".
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target


def back_to(url: str) -> str:
    """The page of this site ``url`` (a Referer) names, path and query, or home."""
    parts = urlsplit(url)
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.media_type in (None, "text/html"):
        response.headers.setdefault("cache-control", "no-store")
    return response
