"""What the policy engine raises on purpose, under the core's ``XbusError``."""

from __future__ import annotations

from xbus.core.errors import XbusError


class GrantFailed(XbusError):
    """Applying a grant to one event failed: a derived field's expression raised or gave a
    value of another type than declared, or a mask failed. The message says which, and never
    carries the record's values (it goes to the audit trail); the event's outcome under that
    grant is ``failed`` and its original bytes go to the dead letters."""

    reason = "grant_failed"


class NoViewPlan(XbusError):
    """A writer schema or a grant's view has what a view plan does not handle (an envelope
    or field encoded otherwise than the view's, a type without an encoder): its views are
    encoded whole instead (``xbus.streams.view_plans``)."""

    reason = "no_view_plan"
