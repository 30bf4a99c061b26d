"""Routing: what one source record leads to, without Kafka in the way.

The record is decoded once (its writer schema fetched by id and parsed once); each grant on
its dataset is judged by ``decide``; what a grant delivers is encoded with the grant's view
schema and addressed to ``deliver.<subscriber>.<dataset>``, keyed as the decision says (from
the view, never the source key), with headers naming the event, the grant and version, and
the source coordinates. Every decision goes into one audit record, the next link of its
source partition's hash chain (``xbus.streams.audit``). What cannot be decoded,
and a grant whose row filter fails, becomes a dead letter on the office's
``_xbus.dead-letters`` with its reason and the original bytes; a grant that fails after its
row filter held becomes a dead letter on the subscriber's own
``deliver.<subscriber>._dead_letters``, holding only the event's envelope without its
records, keyed as its delivery would have been. ``xbus.streams.worker`` writes it all.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import orjson
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from xbus.core import headers
from xbus.core.catalog import Dataset
from xbus.core.contracts import set_subject_compatibility, subject_compatibility
from xbus.core.envelope import (
    ChangeEvent,
    record_full_name,
    require_valid_event,
    with_union_branches,
)
from xbus.core.errors import RegistryUnavailable, SerializationError
from xbus.core.headers import Headers
from xbus.core.metrics import (
    DEAD_LETTERS,
    ENGINE_VIEWS_ENCODED_WHOLE,
    EVENTS_DELIVERED,
    EVENTS_DENIED,
    EVENTS_FILTERED,
    MASKS_APPLIED,
)
from xbus.core.serde import EventDecoder, WireEncoder
from xbus.core.topics import (
    AUDIT_TOPIC,
    DEAD_LETTER_TOPIC,
    subscriber_dead_letter_topic,
    value_subject,
)
from xbus.streams.audit import AuditChains, chain_of
from xbus.streams.decision import CelEvent, Decision, admit, decide
from xbus.streams.exceptions import GrantFailed
from xbus.streams.expressions import failure_text
from xbus.streams.policy import CompiledGrant
from xbus.streams.state import PolicySnapshot
from xbus.streams.view_plans import Scanned, Scanner, ViewPlan, plan_or_none, scanner_or_none


class Output(NamedTuple):
    """One write the engine makes for a source record (a tuple: made a dozen times per event,
    it must be cheap)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass
class Routing:
    """Everything one source record leads to."""

    deliveries: list[tuple[CompiledGrant, Output]] = field(default_factory=list)
    audit: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)

    @property
    def outputs(self) -> list[Output]:
        return [o for _, o in self.deliveries] + self.dead_letters + self.audit


class ViewEncoders:
    """The encoder of each grant version's view schema, registered under the subscriber
    topic's subject on first use (with no registry, schema id 0: for tests and explain).

    A view subject's compatibility is ``NONE``: the office may add, drop or retype the fields
    a subscriber receives with any new grant version, and every record names its own schema
    id. The registry's global default (``FULL_TRANSITIVE``, for the departments' datasets)
    would refuse such a change and stop delivery to that subscriber.

    A view the registry refused is not asked for again for ``REFUSAL_KEPT`` seconds: the
    grant's events fail (to the dead letters) meanwhile without a request each, and a refusal
    that was mended (a permission given) is found out at the next try."""

    REFUSAL_KEPT = 30.0

    def __init__(
        self,
        registry: SchemaRegistryClient | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._encoders: dict[tuple[str, int], tuple[WireEncoder, str]] = {}
        # Why each refused view was refused, and until when that stands.
        self._refused: dict[tuple[str, int], tuple[str, float]] = {}
        self._subjects_opened: set[str] = set()

    def __call__(self, grant: CompiledGrant) -> tuple[WireEncoder, str]:
        """The grant's encoder and the full name of its view record."""
        key = (grant.grant.grant, grant.version)
        found = self._encoders.get(key)
        if found is None:
            refused = self._refused.get(key)
            if refused is not None and self._clock() < refused[1]:
                raise GrantFailed(refused[0])
            schema_id = 0
            if self._registry is not None:
                subject = value_subject(grant.topic)
                try:
                    schema_id = self._register(
                        self._registry, subject, Schema(json.dumps(grant.view_schema), "AVRO")
                    )
                except SchemaRegistryError as exc:
                    if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                        why = f"the registry refused the view schema: {exc}"
                        self._refused[key] = (why, self._clock() + self.REFUSAL_KEPT)
                        raise GrantFailed(why) from exc
                    raise RegistryUnavailable(f"registering {subject}: {exc}") from exc
                except Exception as exc:  # refused connection, timeout
                    raise RegistryUnavailable(f"registering {subject}: {exc}") from exc
            found = (WireEncoder(schema_id, grant.view_schema), record_full_name(grant.view_record))
            self._encoders[key] = found
        return found

    def _register(self, registry: SchemaRegistryClient, subject: str, schema: Schema) -> int:
        """Register ``schema`` under ``subject``, whose compatibility is made ``NONE`` first
        (or, for a subject that does not exist yet, right after its first schema: the
        registry keeps no settings for a subject it does not know).

        What is there already is only read: a subject whose compatibility is ``NONE`` is
        left as it is, and a view it holds already is looked up, not registered again. The
        registry lets only a subject's owner change it, so a subject another user made (the
        office, by hand) still serves the engine as long as it needs nothing new there."""
        if subject not in self._subjects_opened:
            if subject_compatibility(registry, subject) != "NONE":
                try:
                    set_subject_compatibility(registry, subject, "NONE")
                except SchemaRegistryError as exc:
                    if exc.http_status_code != 404:
                        raise
                    schema_id = registry.register_schema(subject, schema)
                    set_subject_compatibility(registry, subject, "NONE")
                    self._subjects_opened.add(subject)
                    return int(schema_id)
            self._subjects_opened.add(subject)
        try:
            found = registry.lookup_schema(subject, schema)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
        else:
            if found.schema_id is not None:
                return int(found.schema_id)
        return int(registry.register_schema(subject, schema))


def read_event(
    decoder: EventDecoder,
    value: bytes | None,
    topic: str | None = None,
    key: bytes | None = None,
    dataset: Dataset | None = None,
) -> ChangeEvent:
    """The change event a source record's value holds, as grants are judged on it: decoded
    (``ts_ms`` a datetime, as row filters take it) with its id turned into text once, not by
    every view's encoding. Raises ``SerializationError`` if it does not decode, ``KeyError``
    or ``TypeError`` if it is not a change event, and ``EnvelopeRejected`` (a
    ``SerializationError``) if, read from ``topic``, its envelope contradicts the topic, its
    op or, with ``dataset``, its ``key``."""
    decoded = decoder.decode(value)
    # A UUID as decoded: typed as the ChangeEvent it becomes only once it is text (compiled,
    # the TypedDict's ``str`` is checked when read).
    decoded["event_id"] = str(decoded["event_id"])
    event = cast(ChangeEvent, decoded)
    if topic is not None:
        require_valid_event(event, topic, key, dataset)
    return event


def written(
    grant: CompiledGrant, decision: Decision, encoders: ViewEncoders
) -> tuple[Decision, bytes | None]:
    """``decision`` as the engine writes it, with the delivered view's bytes in the Confluent
    wire format; a view that does not encode, or whose schema the registry refuses, makes it
    ``failed``. Raises ``RegistryUnavailable`` if the registry does not answer."""
    if decision.view is None:
        return decision, None
    try:
        encoder, record_name = encoders(grant)
        return decision, encoder.encode(with_union_branches(decision.view, record_name))
    except GrantFailed as exc:
        reason = str(exc)
    except RegistryUnavailable:
        raise
    except Exception as exc:
        reason = f"the view does not encode: {failure_text(exc)}"
    return decision._replace(outcome="failed", reason=reason, view=None), None


@functools.cache
def metric_child(metric: Any, *labels: str) -> Any:
    """A metric's child for these labels, looked up once (``labels()`` takes a lock)."""
    return metric.labels(*labels)


def _header(value: object) -> bytes:
    return str(value).encode()


def _source_headers(topic: str, partition: int, offset: int) -> Headers:
    """A dead letter's headers naming the source record it stands for."""
    return [
        (headers.SOURCE_TOPIC, _header(topic)),
        (headers.SOURCE_PARTITION, _header(partition)),
        (headers.SOURCE_OFFSET, _header(offset)),
    ]


_UNMADE = object()
"""A view plan not made yet."""

_new_output = functools.partial(tuple.__new__, Output)
"""``Output`` made from one tuple, without the named tuple's keyword handling."""


@dataclass(frozen=True)
class _Target:
    """A grant made ready for routing once per policy snapshot: the headers naming it, its
    metric children and its audit entries, so that no event pays for them again."""

    grant: CompiledGrant
    topic: str
    headers: Headers
    origin: bytes
    labels: tuple[str, str]
    delivered: Any
    filtered: Any
    encoded_whole: Any
    masks_applied: tuple[Any, ...]
    dead_letters: str
    entries: dict[tuple[str, str, bool], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, grant: CompiledGrant) -> _Target:
        labels = (grant.grant.subscriber, grant.dataset.name)
        return cls(
            grant,
            grant.topic,
            [
                (headers.GRANT_ID, _header(grant.grant.grant)),
                (headers.GRANT_VERSION, _header(grant.version)),
            ],
            headers.origin_grant_part(grant.grant.grant, grant.version),
            labels,
            metric_child(EVENTS_DELIVERED, *labels, "topic"),
            metric_child(EVENTS_FILTERED, *labels),
            metric_child(ENGINE_VIEWS_ENCODED_WHOLE, *labels),
            tuple(
                metric_child(MASKS_APPLIED, *labels, mask.split(":", 1)[1]) for mask in grant.masks
            ),
            subscriber_dead_letter_topic(grant.grant.subscriber),
        )

    def entry(self, outcome: str, reason: str, delivered: bool) -> dict[str, Any]:
        """The grant's entry in an event's audit record for this outcome, made once (a
        reason never carries a record's values, so there are few of them). Shared by every
        audit record that holds it: never to be changed."""
        key = (outcome, reason, delivered)
        found = self.entries.get(key)
        if found is None:
            grant = self.grant
            found = {
                "subscriber": grant.grant.subscriber,
                "grant": grant.grant.grant,
                "version": grant.version,
                "decision": outcome,
                "reason": reason,
                "masks": list(grant.masks) if delivered else [],
            }
            if len(self.entries) < 64:  # reasons naming a failure's text are not kept
                self.entries[key] = found
        return found


class Router:
    """Decides, for each source record and each grant on its dataset, what leaves. Its audit
    record is sealed onto the hash chain of the record's source partition (``chains``: a
    fresh ``AuditChains`` if not given, every chain starting at seq 0)."""

    def __init__(
        self,
        policy: Callable[[], PolicySnapshot],
        decoder: EventDecoder,
        encoders: ViewEncoders,
        chains: AuditChains | None = None,
        *,
        splice: bool = True,
    ) -> None:
        self._policy = policy
        self._chains = chains if chains is not None else AuditChains()
        self._decoder = decoder
        self._encoders = encoders
        self._snapshot: PolicySnapshot | None = None
        self._targets: dict[str, tuple[_Target, ...]] = {}
        # Views are spliced from the source bytes where the decoder also gives writer
        # schemas by id (``WriterSchemas``); else, or with ``splice=False``, encoded whole.
        self._writer_schema: Callable[[int], dict[str, Any]] | None = (
            getattr(decoder, "schema", None) if splice else None
        )
        self._scanners: dict[int, Scanner | None] = {}
        self._plans: dict[tuple[str, int], list[Any]] = {}
        self.counts: Counter[Any] = Counter()

    def _scanner(self, value: bytes) -> tuple[Scanner, int] | None:
        """The scanner of the record's writer schema, and its id, if views can be spliced."""
        if self._writer_schema is None:
            return None
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in self._scanners:
            self._scanners[schema_id] = scanner_or_none(self._writer_schema(schema_id))
        scanner = self._scanners[schema_id]
        return None if scanner is None else (scanner, schema_id)

    def _plans_of(self, topic: str, targets: tuple[_Target, ...], schema_id: int) -> list[Any]:
        """The view plans of ``topic``'s grants (in the order of ``targets``) for records of
        writer schema ``schema_id``, each made on first use (``_UNMADE`` until then) and
        kept for the policy snapshot."""
        key = (topic, schema_id)
        plans = self._plans.get(key)
        if plans is None:
            plans = self._plans[key] = [_UNMADE] * len(targets)
        return plans

    def _plan(self, target: _Target, scanner: Scanner) -> ViewPlan | None:
        """The grant's view plan for records of ``scanner``'s writer schema (None: encoded
        whole). Raises ``RegistryUnavailable``."""
        try:
            encoder, _ = self._encoders(target.grant)
        except GrantFailed:  # the registry refused the view: the reference path says so
            return None
        return plan_or_none(target.grant, scanner, encoder.header)

    def flush_metrics(self) -> None:
        """Add the counts of the events routed since the last call to their metrics (once
        per batch, not once per event)."""
        counts, self.counts = self.counts, Counter()
        for child, count in counts.items():
            child.inc(count)

    def _targets_of(self, topic: str) -> tuple[PolicySnapshot, tuple[_Target, ...]]:
        """The policy in force and the grants on ``topic``, prepared once per snapshot."""
        snapshot = self._policy()
        if snapshot is not self._snapshot:
            self._snapshot, self._targets, self._plans = snapshot, {}, {}
        targets = self._targets.get(topic)
        if targets is None:
            targets = tuple(_Target.of(g) for g in snapshot.grants.get(topic, ()))
            self._targets[topic] = targets
        return snapshot, targets

    def route(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: dt.datetime | None = None,
    ) -> Routing:
        """What one source record leads to. Raises only ``RegistryUnavailable``: then the
        record is to be routed again later."""
        now = now or dt.datetime.now(dt.UTC)
        at = now.timestamp()
        routing = Routing()
        snapshot, targets = self._targets_of(topic)
        try:
            dataset_of_topic = targets[0].grant.dataset if targets else None
            event = read_event(self._decoder, value, topic, key, dataset_of_topic)
            event_id, op = event["event_id"], event["op"]
            department, dataset = event["department"], event["dataset"]
        except SerializationError as exc:
            routing.dead_letters.append(
                self._dead_letter(
                    key, value, exc.reason, str(exc), _source_headers(topic, partition, offset)
                )
            )
            return routing
        except (KeyError, TypeError) as exc:  # a record of some other schema
            detail = f"not a change event: {failure_text(exc)}"
            routing.dead_letters.append(
                self._dead_letter(
                    key,
                    value,
                    "not_a_change_event",
                    detail,
                    _source_headers(topic, partition, offset),
                )
            )
            return routing
        cel_event = CelEvent(event, pruned=True)
        event_header = (headers.EVENT_ID, event_id.encode())
        source = headers.origin_source_part(topic, partition, offset)
        decisions: list[dict[str, Any]] = []
        scanned: Scanned | None = None
        found = self._scanner(value) if targets and value is not None else None
        if found is not None:
            try:
                scanned = found[0].scan(value[5:])  # type: ignore[index]
            except Exception:  # a body its schema does not describe: encoded whole
                scanned = None
        counts = self.counts
        deliveries = routing.deliveries
        plans: list[Any] = []
        if scanned is not None:
            plans = self._plans_of(topic, targets, found[1])  # type: ignore[index]
        record = event["after"] or event["before"]
        for i, target in enumerate(targets):
            grant = target.grant
            settled = admit(grant, event, now, cel_event, at)
            encoded = None
            if settled is None and plans:
                plan = plans[i]
                if plan is _UNMADE:
                    plan = plans[i] = self._plan(target, found[0])  # type: ignore[index]
                if plan is not None:
                    # The fast path: the view spliced from the source bytes.
                    try:
                        view_key = None
                        if grant.record_key is not None and record is not None:
                            view_key = grant.record_key(record)
                        encoded = plan.view(scanned, event, now, snapshot)
                    except RegistryUnavailable:
                        raise
                    except Exception:  # the reference path says why
                        encoded = None
                    else:
                        record_headers = [event_header, (headers.ORIGIN, target.origin + source)]
                        output = _new_output((target.topic, view_key, encoded, record_headers))
                        deliveries.append((grant, output))
                        counts[target.delivered] += 1
                        for counter in target.masks_applied:
                            counts[counter] += 1
                        decisions.append(target.entry("delivered", "", True))
                        continue
            if settled is not None:
                decision = settled
            else:
                decision = decide(grant, event, now, snapshot, cel_event)
                counts[target.encoded_whole] += 1
                if decision.view is not None:
                    decision, encoded = written(grant, decision, self._encoders)
            outcome = decision.outcome
            if encoded is not None:
                record_headers = [event_header, (headers.ORIGIN, target.origin + source)]
                output = _new_output((target.topic, decision.key, encoded, record_headers))
                deliveries.append((grant, output))
                counts[target.delivered] += 1
                for counter in target.masks_applied:
                    counts[counter] += 1
            elif outcome == "failed" and decision.rows_held:
                routing.dead_letters.append(
                    self._subscriber_dead_letter(
                        target,
                        event,
                        decision,
                        [event_header, *_source_headers(topic, partition, offset)],
                    )
                )
            elif outcome == "failed":
                routing.dead_letters.append(
                    self._dead_letter(
                        key,
                        value,
                        GrantFailed.reason,
                        f"grant {grant.grant.grant} v{grant.version}: {decision.reason}",
                        [*_source_headers(topic, partition, offset), target.headers[0]],
                    )
                )
            elif outcome == "filtered":
                counts[target.filtered] += 1
            else:  # denied or expired
                label = outcome if outcome == "expired" else decision.reason
                counts[metric_child(EVENTS_DENIED, *target.labels, label)] += 1
            decisions.append(target.entry(outcome, decision.reason, encoded is not None))
        if decisions:
            chain = chain_of(topic, partition)
            content = {
                "event_id": event_id,
                "department": department,
                "dataset": dataset,
                "op": op,
                "source": {"topic": topic, "partition": partition, "offset": offset},
                "at": now.isoformat(),
                "decisions": decisions,
            }
            routing.audit.append(
                _new_output((AUDIT_TOPIC, chain.encode(), self._chains.seal(chain, content), ()))
            )
        return routing

    def _subscriber_dead_letter(
        self, target: _Target, event: ChangeEvent, decision: Decision, source: Headers
    ) -> Output:
        """A failure after the row filter held, for the subscriber: it may know the event
        exists, and nothing of its records."""
        metric_child(DEAD_LETTERS, GrantFailed.reason).inc()
        grant = target.grant
        envelope = {k: v for k, v in event.items() if k not in ("before", "after")}
        detail = f"grant {grant.grant.grant} v{grant.version}: {decision.reason}"
        return Output(
            target.dead_letters,
            decision.key,
            orjson.dumps(
                {
                    **envelope,
                    "grant": grant.grant.grant,
                    "version": grant.version,
                    "reason": decision.reason,
                },
                default=str,
            ),
            [
                *source,
                *target.headers,
                (headers.DLQ_REASON, _header(GrantFailed.reason)),
                (headers.DLQ_ERROR, _header(detail)[: headers.DLQ_ERROR_LIMIT]),
            ],
        )

    def _dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, detail: str, source: Headers
    ) -> Output:
        metric_child(DEAD_LETTERS, reason).inc()
        return Output(
            DEAD_LETTER_TOPIC,
            key,
            value,
            [
                (headers.DLQ_REASON, _header(reason)),
                (headers.DLQ_ERROR, _header(detail)[: headers.DLQ_ERROR_LIMIT]),
                *source,
            ],
        )
