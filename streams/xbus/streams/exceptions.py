"""What the policy engine raises on purpose, under the core's ``XbusError``."""

from __future__ import annotations

from xbus.core.errors import XbusError


class GrantFailed(XbusError):
    """Applying a grant to one event failed: a derived field's expression raised or gave a
    value of another type than declared, or a mask failed. The message says which, and never
    carries the record's values (it goes to the audit trail); the event's outcome under that
    grant is ``failed`` and its original bytes go to the dead letters."""

    reason = "grant_failed"
