"""Sharing requests through the console's pages, against a real bus and PostgreSQL: an
approval becomes a signed grant on the grants topic, a revoke removes it, and nobody takes
a step that is not theirs."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
import psycopg
import pytest

from tests.console.conftest import Served, Visitor
from xbus.console.accounts import Role
from xbus.console.flow import SharingFlow
from xbus.console.sharing import Action, State
from xbus.streams.state import current_grants

LICENCE = "market_regulation.business_licence"
NEW_LICENCE_REQUEST = f"/requests/new?dataset={LICENCE}"


def _subscriber() -> str:
    return f"sub_{uuid.uuid4().hex[:8]}"


def _file(v: Visitor, dataset: str, fields: dict[str, str], days: int = 365) -> int:
    form: dict[str, object] = {
        "dataset": dataset,
        "operations": ["CREATE", "UPDATE", "DELETE", "SNAPSHOT"],
        "purpose": "Open a tax account for each new enterprise",
        "scenario": "税务登记 at the district tax office",
        "legal_basis": "税收征收管理法 第十五条",
        "days": str(days),
    }
    for path, mask in fields.items():
        form[f"ask:{path}"] = "1"
        form[f"mask:{path}"] = mask
    answer = v.post("/requests", form, csrf_from=f"/requests/new?dataset={dataset}")
    assert answer.status_code == 303, answer.text
    found = re.search(r"/requests/(\d+)", answer.headers["location"])
    assert found is not None
    return int(found.group(1))


def _logged_in(served: Served, role: Role, party: str | None = None) -> Visitor:
    v = Visitor(served.url)
    assert v.log_in(served.account(role, party)).status_code == 303
    return v


def _in_force(served: Served) -> dict[str, object]:
    return dict(current_grants(served.flow.settings, served.flow.catalog).in_force)


def test_a_conditional_request_becomes_a_grant_with_the_owners_mask_and_a_revoke_ends_it(
    console_server: Served,
) -> None:
    subscriber = _subscriber()
    asker = _logged_in(console_server, Role.SUBSCRIBER, subscriber)
    number = _file(asker, LICENCE, {"credit_code": "", "name": "", "legal_representative_id": ""})
    filed = asker.get(f"/requests/{number}")
    assert "pending review" in filed.text and "countdown" in filed.text

    office = _logged_in(console_server, Role.OFFICE)
    passed = office.post(
        f"/requests/{number}/review", {"decision": "pass", "reason": ""}, f"/requests/{number}"
    )
    assert passed.status_code == 303, passed.text
    assert console_server.store.request(number).state is State.PENDING_OWNER

    owner = _logged_in(console_server, Role.DEPARTMENT, "market_regulation")
    answered = owner.post(
        f"/requests/{number}/answer",
        {
            "decision": "approve",
            "grant:credit_code": "1",
            "grant:name": "1",
            "grant:legal_representative_id": "1",
            "mask:legal_representative_id": "show_last",
            "mask_n:legal_representative_id": "4",
            "days": "365",
            "reason": "the ID number only to match the legal representative",
        },
        f"/requests/{number}",
    )
    assert answered.status_code == 303, answered.text
    done = console_server.store.request(number)
    assert done.state is State.APPLIED
    assert [s.action for s in done.steps] == [
        Action.SUBMIT,
        Action.PASS_REVIEW,
        Action.NARROW,
        Action.APPLY,
    ]
    grant = _in_force(console_server)[done.grant_id or ""].grant  # type: ignore[attr-defined]
    assert grant.subscriber == subscriber
    assert grant.approval == done.reference
    assert grant.fields["legal_representative_id"].mask.model_dump() == {
        "type": "show_last",
        "n": 4,
    }
    assert grant.fields["credit_code"].mask is None
    assert grant.valid_until - grant.valid_from == dt.timedelta(days=365)
    page = asker.get(f"/requests/{number}")
    assert "applied" in page.text and "show last N" in page.text

    revoked = office.post(
        f"/requests/{number}/revoke", {"reason": "the purpose ended"}, f"/requests/{number}"
    )
    assert revoked.status_code == 303, revoked.text
    assert done.grant_id not in _in_force(console_server)
    assert console_server.store.request(number).state is State.REVOKED


def test_an_unconditional_dataset_is_granted_on_the_offices_approval_and_the_owner_is_told(
    console_server: Served,
) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, "health.clinic", {"clinic_code": "", "name": ""}, days=30)
    office = _logged_in(console_server, Role.OFFICE)
    office.post(f"/requests/{number}/review", {"decision": "pass"}, f"/requests/{number}")
    done = console_server.store.request(number)
    assert done.state is State.APPLIED
    assert Action.INFORM in [s.action for s in done.steps]
    assert done.grant_id in _in_force(console_server)


def test_an_answer_that_breaks_the_grant_rules_changes_nothing_until_the_owner_approves_explicitly(
    console_server: Served,
) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, LICENCE, {"credit_code": "", "contact_phone": ""})
    office = _logged_in(console_server, Role.OFFICE)
    office.post(f"/requests/{number}/review", {"decision": "pass"}, f"/requests/{number}")
    owner = _logged_in(console_server, Role.DEPARTMENT, "market_regulation")
    as_asked = {"decision": "approve", "grant:credit_code": "1", "grant:contact_phone": "1"}
    refused = owner.post(f"/requests/{number}/answer", {**as_asked, "days": "365"}, "/")
    assert refused.status_code == 403
    assert "contact_phone" in refused.text
    assert console_server.store.request(number).state is State.PENDING_OWNER
    approved = owner.post(
        f"/requests/{number}/answer",
        {**as_asked, "unmasked:contact_phone": "1", "days": "365"},
        "/",
    )
    assert approved.status_code == 303, approved.text
    done = console_server.store.request(number)
    assert done.state is State.APPLIED
    grant = _in_force(console_server)[done.grant_id or ""].grant  # type: ignore[attr-defined]
    assert grant.fields["contact_phone"].approved_unmasked == done.reference


def test_nobody_takes_a_step_that_is_not_theirs(console_server: Served) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, LICENCE, {"credit_code": ""})
    office = _logged_in(console_server, Role.OFFICE)
    office.post(f"/requests/{number}/review", {"decision": "pass"}, f"/requests/{number}")

    other_department = _logged_in(console_server, Role.DEPARTMENT, "health")
    answer = {"decision": "approve", "grant:credit_code": "1", "days": "365"}
    refused = other_department.post(f"/requests/{number}/answer", answer, "/")
    assert refused.status_code == 403
    assert "only market_regulation" in refused.text
    # It does not even see the request.
    assert other_department.get(f"/requests/{number}").status_code == 404

    other_subscriber = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    assert other_subscriber.get(f"/requests/{number}").status_code == 404
    assert f'/requests/{number}"' not in other_subscriber.get("/requests").text

    operator = _logged_in(console_server, Role.OPERATOR)
    assert operator.get(f"/requests/{number}").status_code == 200
    assert operator.post(f"/requests/{number}/answer", answer, "/").status_code == 403
    assert operator.post("/requests", {"dataset": LICENCE}, "/").status_code == 403
    assert console_server.store.request(number).state is State.PENDING_OWNER


def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(
    console_server: Served,
) -> None:
    office = _logged_in(console_server, Role.OFFICE)
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, LICENCE, {"credit_code": ""})
    no_token = office.post(f"/requests/{number}/review", {"decision": "pass"}, csrf_from=None)
    assert no_token.status_code == 403
    wrong = office.post(
        f"/requests/{number}/review", {"decision": "pass", "csrf": "x" * 43}, csrf_from=None
    )
    assert wrong.status_code == 403
    token = office.csrf(f"/requests/{number}")
    elsewhere = office.http.post(
        f"/requests/{number}/review",
        data={"decision": "pass", "csrf": token},
        headers={"origin": "https://attacker.example"},
    )
    assert elsewhere.status_code == 403
    assert console_server.store.request(number).state is State.PENDING_REVIEW
    # Another user's token does not do either.
    other = _logged_in(console_server, Role.OFFICE)
    foreign = office.http.post(
        f"/requests/{number}/review", data={"decision": "pass", "csrf": other.csrf()}
    )
    assert foreign.status_code == 403


def test_the_session_cookie_is_hardened_and_a_changed_one_is_not_a_session(
    console_server: Served,
) -> None:
    name = console_server.account(Role.OFFICE)
    v = Visitor(console_server.url)
    answer = v.log_in(name)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Host-xbus-session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert v.get("/").status_code == 200
    token = v.session
    v.use_session(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert v.get("/").status_code == 303
    assert v.get("/").headers["location"].startswith("/login")
    wrong = Visitor(console_server.url).log_in(name, "not the password at all")
    assert wrong.status_code == 401 and "set-cookie" not in {
        k.lower() for k in wrong.headers if "session" in wrong.headers[k]
    }
    unknown = Visitor(console_server.url).log_in("nobody-" + name, "not the password at all")
    assert unknown.status_code == 401


def test_a_dataset_that_is_not_shared_shows_why_and_takes_no_request(
    console_server: Served,
) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    page = asker.get("/catalogue/civil_affairs/adoption_registration")
    assert page.status_code == 200
    assert "民法典" in page.text and "not shared" in page.text
    assert "/requests/new" not in page.text
    licence = asker.get("/catalogue/market_regulation/business_licence")
    assert "/requests/new?dataset=market_regulation.business_licence" in licence.text
    refused = asker.post(
        "/requests",
        {
            "dataset": "civil_affairs.adoption_registration",
            "ask:registration_no": "1",
            "operations": "CREATE",
            "purpose": "p",
            "scenario": "s",
            "legal_basis": "b",
            "days": "30",
        },
    )
    assert refused.status_code == 403
    assert "never leaves civil_affairs" in refused.text


def test_an_overdue_request_is_escalated_to_the_office_once(console_server: Served) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, LICENCE, {"credit_code": ""})
    flow = console_server.flow
    later = SharingFlow(
        flow.store,
        flow.settings,
        flow.catalog,
        flow.calendar,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=10),
    )
    assert number in later.tick()
    assert number not in later.tick()
    escalated = console_server.store.request(number)
    assert escalated.escalated and escalated.state is State.PENDING_REVIEW
    assert [s.action for s in escalated.steps].count(Action.ESCALATE) == 1
    office = _logged_in(console_server, Role.OFFICE)
    assert "escalated to the office" in office.get("/").text


def test_the_steps_of_a_request_cannot_be_changed_or_deleted(
    console_server: Served, postgres_dsn: str
) -> None:
    asker = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    number = _file(asker, LICENCE, {"credit_code": ""})
    with psycopg.connect(postgres_dsn) as conn:
        for statement in (
            "UPDATE console.steps SET reason = 'changed' WHERE request = %s",
            "DELETE FROM console.steps WHERE request = %s",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement, (number,))
            conn.rollback()
    assert len(console_server.store.request(number).steps) == 1


def test_pages_carry_a_content_security_policy(console_server: Served) -> None:
    page = httpx.get(f"{console_server.url}/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_renewal_gives_a_new_version_of_the_same_grant_and_supersedes_the_first_request(
    console_server: Served,
) -> None:
    subscriber = _subscriber()
    asker = _logged_in(console_server, Role.SUBSCRIBER, subscriber)
    office = _logged_in(console_server, Role.OFFICE)
    first = _file(asker, "health.clinic", {"clinic_code": ""}, days=30)
    office.post(f"/requests/{first}/review", {"decision": "pass"}, f"/requests/{first}")
    applied = console_server.store.request(first)
    assert applied.state is State.APPLIED and applied.grant_version == 1
    page = asker.get(f"/requests/{first}")
    assert f"renews={first}" in page.text  # the renewal link
    form = asker.get(f"/requests/new?dataset=health.clinic&renews={first}")
    assert 'name="renews"' in form.text
    assert 'name="ask:clinic_code" value="1" checked' in form.text
    renewal = asker.post(
        "/requests",
        {
            "dataset": "health.clinic",
            "renews": str(first),
            "ask:clinic_code": "1",
            "ask:name": "1",
            "operations": ["CREATE", "UPDATE"],
            "purpose": "p",
            "scenario": "s",
            "legal_basis": "b",
            "days": "90",
        },
        csrf_from=f"/requests/new?dataset=health.clinic&renews={first}",
    )
    assert renewal.status_code == 303, renewal.text
    second = int(renewal.headers["location"].split("/")[2].split("?")[0])
    diff = office.get(f"/requests/{second}").text
    assert f"in force: {applied.grant_id} v1" in diff and "+  name: {}" in diff
    office.post(f"/requests/{second}/review", {"decision": "pass"}, f"/requests/{second}")
    renewed = console_server.store.request(second)
    assert renewed.state is State.APPLIED
    assert (renewed.grant_id, renewed.grant_version) == (applied.grant_id, 2)
    assert console_server.store.request(first).state is State.SUPERSEDED
    grant = _in_force(console_server)[applied.grant_id or ""].grant  # type: ignore[attr-defined]
    assert set(grant.fields) == {"clinic_code", "name"}
    # Another subscriber cannot renew it.
    other = _logged_in(console_server, Role.SUBSCRIBER, _subscriber())
    assert other.get(f"/requests/new?dataset=health.clinic&renews={first}").status_code == 404
