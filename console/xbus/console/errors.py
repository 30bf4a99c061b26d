"""The console's errors, under the bus's root error."""

from __future__ import annotations

from xbus.core.errors import XbusError


class ConsoleError(XbusError):
    """Something a person gave the console is wrong: the message says what and where."""

    reason = "console"


class NotFound(ConsoleError):
    """The page's subject does not exist, or the viewer may not know that it does."""

    reason = "not_found"


class Refusal(ConsoleError):
    """A step that is not allowed: who tried what, from which state, and why not."""

    reason = "not_allowed"


class LoginRequired(ConsoleError):
    """No live session: a page redirects to the login, a form is refused."""

    reason = "login_required"


class Forbidden(ConsoleError):
    """A form without the right CSRF token, or from another origin."""

    reason = "forbidden"
