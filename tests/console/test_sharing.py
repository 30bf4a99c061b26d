"""The rule book of sharing requests: who may take which step from which state."""

from __future__ import annotations

import datetime as dt

import pytest

from xbus.console.accounts import Account, Role
from xbus.console.errors import Refusal
from xbus.console.sharing import (
    Action,
    FieldRequest,
    SharingRequest,
    State,
    Terms,
    narrowed_only,
    next_state,
    restrict_rows,
)

OFFICE = Account("office", Role.OFFICE)
OWNER = Account("scjg", Role.DEPARTMENT, "market_regulation")
OTHER_DEPARTMENT = Account("wsjk", Role.DEPARTMENT, "health")
SUBSCRIBER = Account("tax", Role.SUBSCRIBER, "tax_bureau")
OPERATOR = Account("ops", Role.OPERATOR)
ASKED = Terms(
    fields=(FieldRequest("credit_code"), FieldRequest("legal_representative_id")),
    rows="after.status == 'ACTIVE'",
    days=365,
)


def request(state: State, sharing: str = "conditional") -> SharingRequest:
    return SharingRequest(
        number=7,
        subscriber="tax_bureau",
        dataset="market_regulation.business_licence",
        sharing=sharing,
        purpose="p",
        scenario="s",
        legal_basis="b",
        asked=ASKED,
        state=state,
        filed_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        filed_by="tax",
    )


def test_the_office_review_sends_conditional_requests_to_the_owner_and_approves_others() -> None:
    assert next_state(request(State.PENDING_REVIEW), Action.PASS_REVIEW, OFFICE) is (
        State.PENDING_OWNER
    )
    unconditional = request(State.PENDING_REVIEW, "unconditional")
    assert next_state(unconditional, Action.PASS_REVIEW, OFFICE) is State.APPROVED


@pytest.mark.parametrize("who", [OWNER, SUBSCRIBER, OPERATOR, OTHER_DEPARTMENT])
def test_only_the_office_reviews(who: Account) -> None:
    with pytest.raises(Refusal):
        next_state(request(State.PENDING_REVIEW), Action.PASS_REVIEW, who)


@pytest.mark.parametrize("action", [Action.APPROVE, Action.NARROW, Action.REFUSE])
def test_only_the_owning_department_answers(action: Action) -> None:
    pending = request(State.PENDING_OWNER)
    assert next_state(pending, action, OWNER) in (State.APPROVED, State.REFUSED)
    for who in (OTHER_DEPARTMENT, OFFICE, SUBSCRIBER, OPERATOR):
        with pytest.raises(Refusal) as refused:
            next_state(pending, action, who)
        if who is OTHER_DEPARTMENT:
            assert "market_regulation" in str(refused.value)


def test_an_answer_before_the_review_is_refused_and_says_the_state() -> None:
    with pytest.raises(Refusal, match="pending_review.*pending_owner"):
        next_state(request(State.PENDING_REVIEW), Action.APPROVE, OWNER)


def test_the_office_refuses_under_review_the_owner_afterwards() -> None:
    assert next_state(request(State.PENDING_REVIEW), Action.REFUSE, OFFICE) is State.REFUSED
    with pytest.raises(Refusal):
        next_state(request(State.PENDING_REVIEW), Action.REFUSE, OWNER)
    with pytest.raises(Refusal):
        next_state(request(State.PENDING_OWNER), Action.REFUSE, OFFICE)


def test_revoking_an_applied_grant_is_for_the_office_or_the_owner() -> None:
    applied = request(State.APPLIED)
    assert next_state(applied, Action.REVOKE, OFFICE) is State.REVOKED
    assert next_state(applied, Action.REVOKE, OWNER) is State.REVOKED
    for who in (SUBSCRIBER, OTHER_DEPARTMENT, OPERATOR):
        with pytest.raises(Refusal):
            next_state(applied, Action.REVOKE, who)
    with pytest.raises(Refusal):
        next_state(request(State.REFUSED), Action.REVOKE, OFFICE)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_an_operator_changes_nothing(state: State, action: Action) -> None:
    with pytest.raises(Refusal):
        next_state(request(state), action, OPERATOR)


@pytest.mark.parametrize("state", [State.REFUSED, State.REVOKED, State.EXPIRED, State.SUPERSEDED])
@pytest.mark.parametrize("action", list(Action))
def test_a_closed_request_takes_no_more_steps(state: State, action: Action) -> None:
    for who in (OFFICE, OWNER, SUBSCRIBER):
        with pytest.raises(Refusal):
            next_state(request(state), action, who)


def test_an_answer_may_narrow_but_never_widen() -> None:
    masked = Terms(
        fields=(
            FieldRequest("credit_code"),
            FieldRequest("legal_representative_id", {"type": "show_last", "n": 4}),
        ),
        rows=restrict_rows(ASKED.rows, "after.district_code == '310115'"),
        days=180,
    )
    assert narrowed_only(ASKED, masked) == []
    assert narrowed_only(ASKED, Terms((FieldRequest("credit_code"),), ASKED.rows, 365)) == []
    wider = Terms(
        fields=(*ASKED.fields, FieldRequest("contact_phone")),
        rows=None,
        days=730,
        operations=("CREATE", "UPDATE", "DELETE", "SNAPSHOT"),
    )
    problems = narrowed_only(ASKED, wider)
    assert any("contact_phone was not asked for" in p for p in problems)
    assert any("730 days" in p for p in problems)
    assert any("rows granted" in p for p in problems)


def test_a_field_asked_masked_cannot_be_granted_in_clear() -> None:
    asked = Terms((FieldRequest("legal_representative_id", {"type": "redact"}),), None, 30)
    granted = Terms((FieldRequest("legal_representative_id"),), None, 30)
    assert narrowed_only(asked, granted) == [
        "legal_representative_id was asked for masked; it cannot be granted in clear"
    ]


def test_further_rows_are_added_to_those_asked() -> None:
    assert restrict_rows("a == 1", "b == 2") == "(a == 1) && (b == 2)"
    assert restrict_rows(None, "b == 2") == "b == 2"
    assert restrict_rows("a == 1", "  ") == "a == 1"
