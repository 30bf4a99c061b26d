"""The console's errors, under the bus's root error."""

from __future__ import annotations

from xbus.core.errors import XbusError


class ConsoleError(XbusError):
    """Something a person gave the console is wrong: the message says what and where."""


class NotFound(ConsoleError):
    """The page's subject does not exist, or the viewer may not know that it does."""


class Refusal(ConsoleError):
    """A step that is not allowed: who tried what, from which state, and why not."""
