"""Sharing requests (共享申请) and the steps they go through, as the office's rules say.

A subscriber asks for a dataset: the fields it needs, optionally which rows, its purpose,
scenario, legal basis and for how long. The office reviews it for compliance (符合性审查,
two working days). An unconditional dataset needs nothing more: the office's approval is the
answer, and the owning department is informed. A conditional dataset goes on to its owning
department, which approves it as asked, narrows it (drops a field, masks one, restricts the
rows, shortens the time) or refuses it with reasons, within five working days. An approved
request becomes a signed grant on the grants topic (applied), or failed if that could not be
done; an applied one ends revoked or expired. A request for a dataset that never leaves its
department (``none``) cannot be filed.

This module is the rule book, with no storage and no web: who may take which step from which
state, and what the step leads to. ``Refusal`` says why a step is not allowed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from xbus.console.accounts import Account, Role
from xbus.console.errors import Refusal
from xbus.core.catalog import Dataset


class State(StrEnum):
    PENDING_REVIEW = "pending_review"
    PENDING_OWNER = "pending_owner"
    APPROVED = "approved"
    REFUSED = "refused"
    APPLIED = "applied"
    REVOKED = "revoked"
    EXPIRED = "expired"
    FAILED = "failed"
    # A later request for the same subscriber and dataset was applied: its grant, a new
    # version of the same one, is what is in force now.
    SUPERSEDED = "superseded"


# The states in which a deadline runs, and how many working days each gives.
DEADLINE_DAYS = {State.PENDING_REVIEW: 2, State.PENDING_OWNER: 5}
FINAL = frozenset({State.REFUSED, State.REVOKED, State.EXPIRED, State.SUPERSEDED})


class Action(StrEnum):
    SUBMIT = "submit"
    PASS_REVIEW = "pass_review"  # the office: compliant; on to the owner, or approved
    APPROVE = "approve"  # the owning department: as asked
    NARROW = "narrow"  # the owning department: approved with less than was asked
    REFUSE = "refuse"  # the office or the owning department, with reasons
    APPLY = "apply"  # the grant signed and written (the console, or the office again)
    FAIL = "fail"  # the grant could not be applied
    REVOKE = "revoke"
    EXPIRE = "expire"
    ESCALATE = "escalate"  # a deadline passed: the office is told
    INFORM = "inform"  # the owner of an unconditional dataset is told of the approval
    SUPERSEDE = "supersede"  # a later request's grant replaced this one's


@dataclass(frozen=True)
class FieldRequest:
    """One field as requested, or as the owner answered: kept as is, or masked (a mask as a
    grant writes it, e.g. ``{"type": "show_last", "n": 4}``). ``unmasked_approved`` is the
    owner's explicit approval to send a personal or sensitive field in clear."""

    path: str
    mask: dict[str, object] | None = None
    unmasked_approved: bool = False


@dataclass(frozen=True)
class Terms:
    """What is asked for, or what was granted: the same shape, so a narrowing is a diff."""

    fields: tuple[FieldRequest, ...]
    rows: str | None
    days: int
    operations: tuple[str, ...] = ("CREATE", "UPDATE", "DELETE", "SNAPSHOT")

    def field_paths(self) -> list[str]:
        return [f.path for f in self.fields]


@dataclass
class SharingRequest:
    """One request as stored: who asked, for what, where it stands."""

    number: int
    subscriber: str
    dataset: str  # department.dataset
    sharing: str  # the dataset's sharing class when the request was filed
    purpose: str
    scenario: str
    legal_basis: str
    asked: Terms
    state: State
    filed_at: dt.datetime
    filed_by: str
    granted: Terms | None = None
    deadline: dt.datetime | None = None
    escalated: bool = False
    grant_id: str | None = None
    grant_version: int | None = None
    valid_until: dt.datetime | None = None
    renews: int | None = None  # the request whose grant this one renews
    steps: list[Step] = field(default_factory=list)

    @property
    def department(self) -> str:
        return self.dataset.split(".", 1)[0]

    @property
    def reference(self) -> str:
        """The approval reference a grant made from this request carries."""
        return f"XBUS-REQ-{self.filed_at.year}-{self.number:05d}"


@dataclass(frozen=True)
class Step:
    """One thing that happened to a request: who did it, when, what, why."""

    at: dt.datetime
    actor: str
    role: str
    action: Action
    from_state: State | None
    to_state: State
    reason: str = ""
    details: dict[str, object] = field(default_factory=dict)


def can_request(account: Account, dataset: Dataset) -> None:
    """Raises ``Refusal`` unless ``account`` may file a request for ``dataset``."""
    if account.role is not Role.SUBSCRIBER:
        raise Refusal("only a subscriber files sharing requests")
    if dataset.sharing == "none":
        raise Refusal(
            f"{dataset.qualified_name} is not shared (sharing class 'none'): it never leaves "
            f"{dataset.department}"
        )


def next_state(request: SharingRequest, action: Action, account: Account) -> State:
    """The state ``action`` by ``account`` leads ``request`` to; ``Refusal`` if the account
    may not take that step, or not from the request's state."""
    state, role = request.state, account.role
    if role is Role.OPERATOR:
        raise Refusal("an operator reads; it changes nothing")
    if action is Action.PASS_REVIEW:
        _need(role is Role.OFFICE, "only the office reviews requests")
        _from(request, action, State.PENDING_REVIEW)
        return State.APPROVED if request.sharing == "unconditional" else State.PENDING_OWNER
    if action in (Action.APPROVE, Action.NARROW):
        _need(
            role is Role.DEPARTMENT and account.party == request.department,
            f"only {request.department}, which owns {request.dataset}, answers this request",
        )
        _from(request, action, State.PENDING_OWNER)
        return State.APPROVED
    if action is Action.REFUSE:
        if state is State.PENDING_REVIEW:
            _need(role is Role.OFFICE, "only the office refuses a request under review")
        else:
            _need(
                role is Role.DEPARTMENT and account.party == request.department,
                f"only {request.department}, which owns {request.dataset}, refuses it now",
            )
            _from(request, action, State.PENDING_OWNER)
        return State.REFUSED
    if action in (Action.APPLY, Action.FAIL):
        _need(role is Role.OFFICE, "only the office applies grants")
        _from(request, action, State.APPROVED, State.FAILED)
        return State.APPLIED if action is Action.APPLY else State.FAILED
    if action is Action.REVOKE:
        _need(
            role is Role.OFFICE
            or (role is Role.DEPARTMENT and account.party == request.department),
            f"only the office or {request.department} revokes this grant",
        )
        _from(request, action, State.APPLIED)
        return State.REVOKED
    if action in (Action.EXPIRE, Action.SUPERSEDE):
        _need(role is Role.OFFICE, "only the console itself expires or supersedes grants")
        _from(request, action, State.APPLIED)
        return State.EXPIRED if action is Action.EXPIRE else State.SUPERSEDED
    raise Refusal(f"{action} is not a step a person takes")


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise Refusal(why)


def _from(request: SharingRequest, action: Action, *states: State) -> None:
    if request.state not in states:
        allowed = " or ".join(s.value for s in states)
        raise Refusal(
            f"request {request.number} is {request.state.value}: {action.value} is taken only "
            f"when it is {allowed}"
        )


def narrowed_only(asked: Terms, granted: Terms) -> list[str]:
    """What in ``granted`` goes beyond ``asked`` (an owner narrows; it never widens): fields
    not asked for, a mask taken off, more days, operations not asked for. Empty when
    ``granted`` only narrows."""
    problems = []
    asked_fields = {f.path: f for f in asked.fields}
    for f in granted.fields:
        if f.path not in asked_fields:
            problems.append(f"{f.path} was not asked for")
        elif asked_fields[f.path].mask is not None and f.mask is None:
            problems.append(f"{f.path} was asked for masked; it cannot be granted in clear")
    if granted.days > asked.days:
        problems.append(f"{granted.days} days is longer than the {asked.days} asked for")
    extra_ops = set(granted.operations) - set(asked.operations)
    if extra_ops:
        problems.append(f"operations {', '.join(sorted(extra_ops))} were not asked for")
    widened = asked.rows and granted.rows != asked.rows
    if widened and not (granted.rows or "").startswith(f"({asked.rows}) && "):
        problems.append(
            "the rows granted must be those asked for, or those and a further condition"
        )
    return problems


def restrict_rows(asked: str | None, further: str | None) -> str | None:
    """The rows granted when the owner adds ``further`` to the rows asked for: both must
    hold, so the answer can only be narrower."""
    further = (further or "").strip()
    if not further:
        return asked
    if not asked:
        return further
    return f"({asked}) && ({further})"
