"""Sharing requests carried through: each step checked by the rule book
(``xbus.console.sharing``), recorded with its state in one transaction, and the grant an
approval makes signed and written to the grants topic at once.

The engine picks a grant up from the topic within about a second, so an approval reaches
the subscriber's deliveries without a restart; a revocation is a tombstone on the same topic
and stops them as fast.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from xbus.console.accounts import Account, Role
from xbus.console.drafts import draft_grant, grant_diff, grant_id_for
from xbus.console.errors import ConsoleError, Refusal
from xbus.console.preview import EventShown, recent_events, show
from xbus.console.sharing import (
    DEADLINE_DAYS,
    Action,
    SharingRequest,
    State,
    Step,
    Terms,
    can_request,
    narrowed_only,
    next_state,
)
from xbus.console.store import ConsoleStore, terms_json
from xbus.console.working_days import Calendar
from xbus.core.catalog import Catalog, Dataset
from xbus.core.envelope import Op
from xbus.core.errors import CatalogError, XbusError
from xbus.core.settings import BusSettings
from xbus.streams.grant_files import check_grant, conflicts, publish_grants, revoke_grant
from xbus.streams.grants import Grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import StoredGrant
from xbus.streams.state import PolicySnapshot, current_grants, reference_table

log = logging.getLogger(__name__)

# The console's own steps (applying, escalating, expiring) are taken as the office.
CONSOLE = Account("console", Role.OFFICE)
GRANTS_FRESH_FOR = 2.0  # seconds a reading of the grants topic is reused


@dataclass(frozen=True)
class Draft:
    """The grant an answer would make, what it changes, and what is wrong with it."""

    grant: Grant
    diff: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]


class SharingFlow:
    """Files, reviews, answers, applies and revokes sharing requests."""

    def __init__(
        self,
        store: ConsoleStore,
        settings: BusSettings,
        catalog: Catalog,
        calendar: Calendar,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.settings = settings
        self.catalog = catalog
        self.calendar = calendar
        self.clock = clock
        self._grants: tuple[float, dict[str, CompiledGrant]] | None = None
        self._grants_lock = threading.Lock()

    # What is in force

    def grants_in_force(self, *, fresh: bool = False) -> dict[str, CompiledGrant]:
        """The grants on the grants topic that the engine enforces, by id (read again at
        most every two seconds)."""
        with self._grants_lock:
            if not fresh and self._grants and time.monotonic() - self._grants[0] < GRANTS_FRESH_FOR:
                return self._grants[1]
            in_force = current_grants(self.settings, self.catalog).in_force
            self._grants = (time.monotonic(), in_force)
            return in_force

    def grant_in_force(self, grant_id: str) -> CompiledGrant | None:
        """Grant ``grant_id`` if it is in force (the topic read again when the last reading
        does not have it: it may have been applied a moment ago)."""
        found = self.grants_in_force().get(grant_id)
        return found if found is not None else self.grants_in_force(fresh=True).get(grant_id)

    def grant_of(self, subscriber: str, dataset: str) -> CompiledGrant | None:
        """The grant in force for ``subscriber`` on ``dataset``, if any."""
        for compiled in self.grants_in_force().values():
            g = compiled.grant
            if g.subscriber == subscriber and g.dataset == dataset:
                return compiled
        return None

    def dataset(self, qualified: str) -> Dataset:
        department, _, name = qualified.partition(".")
        try:
            return self.catalog.get(department, name)
        except CatalogError as exc:
            raise ConsoleError(str(exc)) from exc

    # Steps

    def file(
        self,
        account: Account,
        dataset: str,
        terms: Terms,
        *,
        purpose: str,
        scenario: str,
        legal_basis: str,
        renews: int | None = None,
    ) -> int:
        """File a request as ``account`` (a subscriber); its number. ``Refusal`` or
        ``ConsoleError`` saying what is wrong, having stored nothing."""
        found = self.dataset(dataset)
        can_request(account, found)
        assert account.party is not None
        missing = [
            name
            for name, value in (
                ("purpose", purpose),
                ("scenario", scenario),
                ("legal basis", legal_basis),
            )
            if not value.strip()
        ]
        if missing:
            raise ConsoleError(f"say the {', '.join(missing)} of the request")
        if not terms.fields:
            raise ConsoleError("name at least one field the request needs")
        unknown = [f.path for f in terms.fields if f.path not in found.classifications]
        if unknown:
            raise ConsoleError(
                f"{found.qualified_name} has no field {', '.join(unknown)}; its fields: "
                f"{', '.join(found.classifications)}"
            )
        known_ops = {op.value for op in Op}
        if not terms.operations or set(terms.operations) - known_ops:
            raise ConsoleError(f"name the operations wanted, among {', '.join(sorted(known_ops))}")
        if not 1 <= terms.days <= 3 * 366:
            raise ConsoleError("a request runs for 1 day to 3 years")
        grant_id = None
        if renews is not None:
            earlier = self.store.request(renews, with_steps=False)
            if earlier.subscriber != account.party or earlier.dataset != found.qualified_name:
                raise Refusal(f"request {renews} is not one of {account.party}'s on {dataset}")
            grant_id = earlier.grant_id
        now = self.clock()
        request = SharingRequest(
            number=0,
            subscriber=account.party,
            dataset=found.qualified_name,
            sharing=found.sharing,
            purpose=purpose.strip(),
            scenario=scenario.strip(),
            legal_basis=legal_basis.strip(),
            asked=terms,
            state=State.PENDING_REVIEW,
            filed_at=now,
            filed_by=account.name,
            deadline=self.calendar.deadline(now, DEADLINE_DAYS[State.PENDING_REVIEW]),
            renews=renews,
            grant_id=grant_id,
        )
        step = Step(
            now,
            account.name,
            account.role.value,
            Action.SUBMIT,
            None,
            State.PENDING_REVIEW,
            details={"asked": terms_json(terms)},
        )
        return self.store.file_request(request, step)

    def review(self, account: Account, number: int, *, passed: bool, reason: str) -> SharingRequest:
        """The office's compliance review: passed (on to the owner, or approved and applied
        for an unconditional dataset) or refused with ``reason``."""
        if not passed:
            return self._refuse(account, number, reason)
        now = self.clock()

        def decide(request: SharingRequest) -> tuple[dict[str, Any], Step]:
            to = next_state(request, Action.PASS_REVIEW, account)
            updates: dict[str, Any] = {"escalated": False}
            if to is State.PENDING_OWNER:
                updates["deadline"] = self.calendar.deadline(now, DEADLINE_DAYS[to])
            else:
                self._check_draft(request, request.asked)
                updates.update(granted=terms_json(request.asked), deadline=None)
            return updates, self._step(account, Action.PASS_REVIEW, request, to, reason, now)

        changed = self.store.change(number, decide)
        if changed.state is State.APPROVED:
            self.store.change(
                number,
                lambda r: (
                    {},
                    self._step(
                        CONSOLE,
                        Action.INFORM,
                        r,
                        r.state,
                        f"{r.department} informed: the office approved this request for an "
                        "unconditional dataset",
                        now,
                    ),
                ),
            )
            return self.apply(number)
        return changed

    def answer(
        self,
        account: Account,
        number: int,
        *,
        action: Action,
        granted: Terms | None = None,
        reason: str = "",
    ) -> SharingRequest:
        """The owning department's answer: approve as asked, narrow to ``granted``, or
        refuse with ``reason``. An approval is applied at once."""
        if action is Action.REFUSE:
            return self._refuse(account, number, reason)
        if action not in (Action.APPROVE, Action.NARROW):
            raise Refusal(f"{action.value} is not an answer to a request")
        now = self.clock()

        def decide(request: SharingRequest) -> tuple[dict[str, Any], Step]:
            to = next_state(request, action, account)
            # An approval as asked may still carry the owner's explicit approvals of
            # protected fields in clear: the terms given, when given.
            terms = granted if granted is not None else request.asked
            if action is Action.NARROW and granted is None:
                raise ConsoleError("a narrowed answer says what is granted")
            beyond = narrowed_only(request.asked, terms)
            if beyond:
                raise Refusal("an answer only narrows what was asked: " + "; ".join(beyond))
            if action is Action.NARROW and not reason.strip():
                raise ConsoleError("say why the request was narrowed")
            self._check_draft(request, terms)
            details: dict[str, object] = {"granted": terms_json(terms)}
            return (
                {"granted": terms_json(terms), "deadline": None, "escalated": False},
                self._step(account, action, request, to, reason, now, details),
            )

        self.store.change(number, decide)
        return self.apply(number)

    def apply(self, number: int, account: Account = CONSOLE) -> SharingRequest:
        """Sign and write the grant of an approved (or failed) request; the request applied,
        or failed with the reason."""
        now = self.clock()
        try:

            def decide(request: SharingRequest) -> tuple[dict[str, Any], Step]:
                to = next_state(request, Action.APPLY, account)
                assert request.granted is not None
                draft = self._check_draft(request, request.granted, valid_from=now)
                applied = publish_grants(
                    self.settings,
                    self.catalog,
                    [self._loaded(request, draft.grant)],
                )[0]
                self._grants = None
                details = {"grant": applied.grant, "version": applied.version}
                return (
                    {
                        "grant_id": applied.grant,
                        "grant_version": applied.version,
                        "valid_until": draft.grant.valid_until,
                    },
                    self._step(account, Action.APPLY, request, to, "", now, details),
                )

            applied = self.store.change(number, decide)
        except (XbusError, KafkaException) as exc:
            # Kafka did not take the grant, or it no longer meets the rules (a grant in force
            # since, a dataset changed): failed, with the reason, for the office to apply
            # again. A step that was not allowed at all (applied already) stays refused.
            why = str(exc)
            log.warning("request %s: the grant was not applied: %s", number, why)
            try:
                return self.store.change(
                    number,
                    lambda r: (
                        {},
                        self._step(
                            account, Action.FAIL, r, next_state(r, Action.FAIL, account), why, now
                        ),
                    ),
                )
            except Refusal:
                raise exc from None
        for other in self.store.requests(subscriber=applied.subscriber, states=(State.APPLIED,)):
            if other.number != number and other.grant_id == applied.grant_id:
                self.store.change(
                    other.number,
                    lambda r: (
                        {},
                        self._step(
                            CONSOLE,
                            Action.SUPERSEDE,
                            r,
                            State.SUPERSEDED,
                            f"request {number} gave version {applied.grant_version}",
                            now,
                        ),
                    ),
                )
        return applied

    def revoke(self, account: Account, number: int, reason: str) -> SharingRequest:
        """Revoke the grant of an applied request: a tombstone on the grants topic, then the
        request revoked. ``ConsoleError`` without a reason."""
        if not reason.strip():
            raise ConsoleError("say why the grant is revoked")
        now = self.clock()

        def decide(request: SharingRequest) -> tuple[dict[str, Any], Step]:
            to = next_state(request, Action.REVOKE, account)
            assert request.grant_id is not None
            revoke_grant(self.settings, request.grant_id)
            self._grants = None
            return {}, self._step(account, Action.REVOKE, request, to, reason, now)

        return self.store.change(number, decide)

    def tick(self) -> list[int]:
        """Escalate every request past its deadline to the office, and mark applied requests
        whose grant lapsed as expired; the numbers of the requests changed."""
        now = self.clock()
        changed = []
        for number in self.store.overdue(now):

            def escalate(request: SharingRequest) -> tuple[dict[str, Any], Step]:
                late = (
                    "the office's review"
                    if request.state is State.PENDING_REVIEW
                    else (f"{request.department}'s answer")
                )
                return {"escalated": True}, self._step(
                    CONSOLE,
                    Action.ESCALATE,
                    request,
                    request.state,
                    f"{late} is overdue (due {request.deadline:%Y-%m-%d %H:%M} UTC)",
                    now,
                )

            self.store.change(number, escalate)
            changed.append(number)
        for number in self.store.lapsed(now):
            self.store.change(
                number,
                lambda r: (
                    {},
                    self._step(
                        CONSOLE,
                        Action.EXPIRE,
                        r,
                        next_state(r, Action.EXPIRE, CONSOLE),
                        "the grant's validity ended",
                        now,
                    ),
                ),
            )
            changed.append(number)
        return changed

    # Drafts

    def draft(
        self, request: SharingRequest, terms: Terms, valid_from: dt.datetime | None = None
    ) -> Draft:
        """The grant ``terms`` would make for ``request``, its diff against the grant in
        force, and every problem the grant rules find in it."""
        in_force = self.grant_of(request.subscriber, request.dataset)
        grant_id = request.grant_id or (
            in_force.grant.grant if in_force else grant_id_for(request.subscriber, request.dataset)
        )
        try:
            grant = draft_grant(request, terms, grant_id, valid_from or self.clock())
        except ValueError as exc:
            raise ConsoleError(f"request {request.number}: {exc}") from exc
        where = Path(f"request {request.number}")
        checked = check_grant(grant, where, self.catalog)
        problems: list[str] = []
        notes: list[str] = []
        if isinstance(checked, list):
            problems = [p.message for p in checked]
        else:
            notes = [n.message for n in checked.notes]
            stored = {
                i: StoredGrant(c.grant, c.version)
                for i, c in self.grants_in_force().items()
                if i != grant_id
            }
            problems = [p.message for p in conflicts([checked], stored)]
        diff = grant_diff(
            in_force.grant if in_force else None, in_force.version if in_force else None, grant
        )
        return Draft(grant, diff, tuple(problems), tuple(notes))

    def preview(self, grant: Grant, count: int = 10) -> list[EventShown]:
        """``grant`` (in force or a draft) run by the engine's decision over the last
        ``count`` events of its dataset, as its subscriber would receive them now.
        ``ConsoleError`` if the grant breaks the grant rules."""
        compiled = check_and_compile(grant, self.catalog)
        if isinstance(compiled, list):
            raise ConsoleError("; ".join(message for _, message in compiled))
        tables = {
            name: reference_table(self.settings, name)
            for name in {lookup.table for lookup in grant.lookup.values()}
        }
        events = recent_events(self.settings, compiled.dataset, count)
        return show(compiled, events, self.clock(), PolicySnapshot({}, tables))

    def _check_draft(
        self, request: SharingRequest, terms: Terms, valid_from: dt.datetime | None = None
    ) -> Draft:
        draft = self.draft(request, terms, valid_from)
        if draft.problems:
            raise Refusal(
                "the grant this answer makes breaks the grant rules: " + "; ".join(draft.problems)
            )
        return draft

    def _loaded(self, request: SharingRequest, grant: Grant) -> Any:
        checked = check_grant(grant, Path(f"request {request.number}"), self.catalog)
        if isinstance(checked, list):
            raise Refusal("; ".join(p.message for p in checked))
        return checked

    def _refuse(self, account: Account, number: int, reason: str) -> SharingRequest:
        if not reason.strip():
            raise ConsoleError("a refusal gives its reasons")
        now = self.clock()
        return self.store.change(
            number,
            lambda r: (
                {"deadline": None},
                self._step(
                    account, Action.REFUSE, r, next_state(r, Action.REFUSE, account), reason, now
                ),
            ),
        )

    @staticmethod
    def _step(
        account: Account,
        action: Action,
        request: SharingRequest,
        to: State,
        reason: str,
        at: dt.datetime,
        details: dict[str, object] | None = None,
    ) -> Step:
        return Step(
            at,
            account.name,
            account.role.value,
            action,
            request.state,
            to,
            reason.strip(),
            details or {},
        )


def sees_source_values(account: Account, dataset: str) -> bool:
    """Whether ``account`` may see a dataset's source values (what would a subscriber see):
    the office, and the department that owns the dataset; nobody else."""
    if account.role is Role.OFFICE:
        return True
    return account.role is Role.DEPARTMENT and account.party == dataset.split(".", 1)[0]
