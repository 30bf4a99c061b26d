"""The grant decision: what one grant lets through of one change event at one moment.

``decide`` is the one place it is made; the engine's routing and ``xbus grants explain``
both call it, so what the office is shown is what the engine does. In order:

- ``denied``: not yet valid (before ``valid_from``);
- ``expired``: at or after ``valid_until``;
- ``denied``: the event's operation is not granted;
- ``filtered``: the row filter is false;
- ``failed``: the row filter raised or gave something other than true or false, or a
  mask or a derived field that is not nullable failed on the record (a nullable derived
  field that fails, or gives another type than declared, is null);
- ``delivered``: with the view, the envelope whose ``before`` and ``after`` are the records
  as the grant transforms them.

Once the row filter holds, the decision also carries the record's key as the subscriber
receives it (``xbus.streams.keys``), also on a failure, whose dead letter is keyed by it.
A reason never carries the record's values: it goes to the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple

import cel

from xbus.core.envelope import ChangeEvent
from xbus.streams.exceptions import GrantFailed
from xbus.streams.expressions import cel_failure, cel_type, cel_value, failure_text
from xbus.streams.policy import CompiledGrant, ReferenceTables

Outcome = Literal["delivered", "filtered", "denied", "expired", "failed"]


class Decision(NamedTuple):
    """What a grant lets through of one event, and why; ``view`` is what the subscriber
    receives, only when ``delivered``; ``key`` its record key, and ``rows_held`` whether the
    row filter held (the subscriber may learn that the event exists, even if it failed)."""

    outcome: Outcome
    reason: str
    view: ChangeEvent | None = None
    key: bytes | None = None
    rows_held: bool = False


NOT_YET_VALID = Decision("denied", "not yet valid")
ROW_FILTER_FALSE = Decision("filtered", "row filter is false")


class CelEvent:
    """An event as row filters read it: converted to CEL values on first use, then shared by
    every grant judged on the same event (the conversion costs more than a filter).

    ``pruned``: a row filter's context holds, of ``before`` and ``after``, only the fields
    the filter reads (``CompiledGrant.row_fields``, as the expression check found them), and
    of the envelope's other variables only those the filter names; the rest costs its
    conversion and cannot change the verdict."""

    __slots__ = ("_context", "_event", "_pruned", "_pruned_contexts")

    def __init__(self, event: ChangeEvent, *, pruned: bool = False) -> None:
        self._event = event
        self._pruned = pruned
        self._context: cel.Context | None = None
        self._pruned_contexts: dict[tuple[frozenset[str], frozenset[str]], cel.Context] = {}

    def context(
        self, fields: frozenset[str] | None = None, names: frozenset[str] | None = None
    ) -> cel.Context:
        """The CEL context of the event's variables (``op``, ``before``, ``after``...); if
        this event is ``pruned`` and they are given, its records cut to ``fields`` and its
        other variables to ``names``."""
        if not self._pruned or fields is None or names is None:
            if self._context is None:
                self._context = cel.Context(cel_value(self._event))
            return self._context
        found = self._pruned_contexts.get((fields, names))
        if found is None:
            event = self._event
            variables = {
                k: cel_value(v)
                for k, v in event.items()
                if k in names and k not in ("before", "after")
            }
            for image in ("before", "after"):
                record = event[image]
                variables[image] = (
                    None
                    if record is None
                    else {f: cel_value(record[f]) for f in fields if f in record}
                )
            found = cel.Context(variables)
            self._pruned_contexts[(fields, names)] = found
        return found


def admit(
    grant: CompiledGrant,
    event: ChangeEvent,
    now: dt.datetime,
    cel_event: CelEvent | None = None,
    at: float | None = None,
) -> Decision | None:
    """The decision on ``event`` if its validity, operation or row filter settles it (not
    delivered); None if the row filter holds, and the records are to be transformed.
    ``at``: ``now`` as a POSIX timestamp, if the caller has it already."""
    g = grant.grant
    start, until = grant.window
    if at is None:
        at = now.timestamp()
    if at < start:
        return NOT_YET_VALID
    if at >= until and g.valid_until is not None:
        return Decision("expired", f"expired at {g.valid_until.isoformat()}")
    op = event["op"]
    if op not in g.operations:
        return Decision("denied", f"operation {op} not granted")
    if grant.rows is not None:
        context = (cel_event or CelEvent(event)).context(grant.row_fields, grant.row_names)
        try:
            verdict = grant.rows.execute(context)
        except Exception as exc:  # CEL raises builtin errors of many kinds
            return Decision("failed", f"row filter failed: {cel_failure(exc, g.rows or '')}")
        if verdict is not True:
            if verdict is False:
                return ROW_FILTER_FALSE
            return Decision("failed", f"row filter gave a {cel_type(verdict)}, not a bool")
    return None


def decide(
    grant: CompiledGrant,
    event: ChangeEvent,
    now: dt.datetime,
    tables: ReferenceTables | None = None,
    cel_event: CelEvent | None = None,
) -> Decision:
    """What ``grant`` lets through of ``event`` at ``now``, looking up in ``tables``. Pass
    ``cel_event`` to share one CEL conversion of the event among several grants. Never
    raises for a record's sake: what fails on it is the outcome ``failed``."""
    settled = admit(grant, event, now, cel_event)
    if settled is not None:
        return settled
    op = event["op"]
    key = None
    try:
        record = event["after"] or event["before"]
        if grant.record_key is not None and record is not None:
            key = grant.record_key(record)
        before = grant.transform(event["before"], op, now, tables)
        after = grant.transform(event["after"], op, now, tables)
    except GrantFailed as exc:
        return Decision("failed", str(exc), None, key, True)
    except Exception as exc:  # a record that does not fit the dataset, say
        return Decision("failed", f"transform failed: {failure_text(exc)}", None, key, True)
    view = event.copy()
    view["before"], view["after"] = before, after
    return Decision("delivered", "", view, key, True)
