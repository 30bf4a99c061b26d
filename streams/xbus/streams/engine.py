"""The policy engine: ``gov.*`` in, ``deliver.<subscriber>.<dataset>`` out.

For each source event the engine decodes it once (its writer schema fetched by id and
parsed once), then for each grant on its dataset decides: not in force (``denied`` before
``valid_from``, ``expired`` after ``valid_until``), operation not granted (``denied``), row
filter false (``filtered``), or ``delivered``: the event projected, masked and transformed,
encoded with the grant's view schema and written to the subscriber's topic keyed as the
source, with headers naming the event, the grant and version, and the source coordinates.
Every decision is also written to the audit topic; what cannot be decoded or masked goes to
the dead-letter topic with its reason and original bytes, and the stream goes on.

At least once: the Faust agent finishes with a batch of events, and so lets their offsets
be committed, only after Kafka acknowledged every write made for them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import cel
import faust
import orjson
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.envelope import record_full_name, with_union_branches
from xbus.core.errors import RegistryUnavailable, XbusError
from xbus.core.metrics import (
    DEAD_LETTERS,
    ENGINE_LATENCY,
    ENGINE_PARTITIONS,
    EVENTS_DELIVERED,
    EVENTS_DENIED,
    EVENTS_FILTERED,
    MASKS_APPLIED,
)
from xbus.core.producing import produce
from xbus.core.serde import (
    EventDecoder,
    Undecodable,
    WireEncoder,
    WriterSchemas,
    registry_client,
)
from xbus.core.settings import BusSettings
from xbus.core.topics import AUDIT_TOPIC, DEAD_LETTER_TOPIC, GRANTS_TOPIC, value_subject
from xbus.streams.policy import CompiledGrant, cel_value
from xbus.streams.sources import SourceWatcher, engine_catalog
from xbus.streams.state import PolicySnapshot, PolicyState

log = logging.getLogger(__name__)

ENGINE_GROUP = "xbus-engine"
BATCH = 500
BATCH_WAIT = 0.01
Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Output:
    """One write the engine makes for a source event."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass
class Routing:
    """Everything one source event leads to."""

    deliveries: list[tuple[CompiledGrant, Output]] = field(default_factory=list)
    audit: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)

    @property
    def outputs(self) -> list[Output]:
        return [o for _, o in self.deliveries] + self.dead_letters + self.audit


class ViewEncoders:
    """The encoder of each grant version's view schema, registered under the subscriber
    topic's subject on first use."""

    def __init__(self, registry: SchemaRegistryClient | None) -> None:
        self._registry = registry
        self._encoders: dict[tuple[str, int], tuple[WireEncoder, str]] = {}

    def __call__(self, grant: CompiledGrant) -> tuple[WireEncoder, str]:
        key = (grant.grant.grant, grant.version)
        found = self._encoders.get(key)
        if found is None:
            schema_id = 0
            if self._registry is not None:
                subject = value_subject(grant.topic)
                try:
                    schema_id = self._registry.register_schema(
                        subject, Schema(json.dumps(grant.view_schema), "AVRO")
                    )
                except SchemaRegistryError as exc:
                    if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                        raise  # refused for good: the record goes to the dead letters
                    raise RegistryUnavailable(f"registering {subject}: {exc}") from exc
                except Exception as exc:  # refused connection, timeout
                    raise RegistryUnavailable(f"registering {subject}: {exc}") from exc
            found = (WireEncoder(schema_id, grant.view_schema), record_full_name(grant.view_record))
            self._encoders[key] = found
        return found


@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    """A metric's child for these labels, looked up once (``labels()`` takes a lock)."""
    return metric.labels(*labels)


def _header(value: object) -> bytes:
    return str(value).encode()


class PolicyEngine:
    """Decides, for each source event and each grant on its dataset, what leaves."""

    def __init__(
        self,
        policy: Callable[[], PolicySnapshot],
        decoder: EventDecoder,
        encoders: ViewEncoders,
    ) -> None:
        self._policy = policy
        self._decoder = decoder
        self._encoders = encoders

    def route(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: dt.datetime | None = None,
    ) -> Routing:
        """What one source record leads to."""
        now = now or dt.datetime.now(dt.UTC)
        routing = Routing()
        source: Headers = [
            ("xbus-source-topic", _header(topic)),
            ("xbus-source-partition", _header(partition)),
            ("xbus-source-offset", _header(offset)),
        ]
        try:
            event = self._decoder.decode(value)
        except Undecodable as exc:
            routing.dead_letters.append(self._dead_letter(key, value, exc.reason, str(exc), source))
            return routing
        snapshot = self._policy()
        grants = snapshot.grants.get(topic, ())
        event_id = str(event["event_id"])
        op = str(event["op"])
        cel_event: cel.Context | None = None
        decisions: list[dict[str, Any]] = []
        for grant in grants:
            g = grant.grant
            labels = (g.subscriber, grant.dataset.name)
            decision, reason = "delivered", ""
            if now < g.valid_from:
                decision, reason = "denied", "not yet valid"
            elif g.valid_until is not None and now >= g.valid_until:
                decision, reason = "expired", f"expired at {g.valid_until.isoformat()}"
            elif op not in g.operations:
                decision, reason = "denied", f"operation {op} not granted"
            elif grant.rows is not None:
                if cel_event is None:
                    # One context per event, shared by every grant's filter: CEL converts
                    # the event once instead of once per grant.
                    cel_event = cel.Context(cel_value(event))
                try:
                    if grant.rows.execute(cel_event) is not True:
                        decision, reason = "filtered", "row filter is false"
                except (KeyError, TypeError, ValueError) as exc:
                    decision, reason = "filtered", f"row filter failed: {exc}"
            if decision == "delivered":
                try:
                    output = self._deliver(grant, event, key, now, source, event_id, snapshot)
                except RegistryUnavailable:
                    raise  # not the record's fault: the batch is processed again later
                except Exception as exc:  # a mask or the encoding failed on this record
                    routing.dead_letters.append(
                        self._dead_letter(
                            key,
                            value,
                            "transform_failed",
                            f"grant {g.grant} v{grant.version}: {exc}",
                            [*source, ("xbus-grant-id", _header(g.grant))],
                        )
                    )
                    decision, reason = "dead_letter", str(exc)
                else:
                    routing.deliveries.append((grant, output))
                    for mask in grant.masks:
                        _child(MASKS_APPLIED, *labels, mask.split(":", 1)[1]).inc()
            elif decision == "filtered":
                _child(EVENTS_FILTERED, *labels).inc()
            else:
                _child(EVENTS_DENIED, *labels, decision if decision == "expired" else reason).inc()
            decisions.append(
                {
                    "subscriber": g.subscriber,
                    "grant": g.grant,
                    "version": grant.version,
                    "decision": decision,
                    "reason": reason,
                    "masks": list(grant.masks) if decision == "delivered" else [],
                }
            )
        if decisions:
            routing.audit.append(
                Output(
                    AUDIT_TOPIC,
                    event_id.encode(),
                    orjson.dumps(
                        {
                            "event_id": event_id,
                            "department": event["department"],
                            "dataset": event["dataset"],
                            "op": op,
                            "source": {"topic": topic, "partition": partition, "offset": offset},
                            "at": now.isoformat(),
                            "decisions": decisions,
                        }
                    ),
                )
            )
        return routing

    def _deliver(
        self,
        grant: CompiledGrant,
        event: dict[str, Any],
        key: bytes | None,
        now: dt.datetime,
        source: Headers,
        event_id: str,
        tables: PolicySnapshot,
    ) -> Output:
        op = str(event["op"])
        view = {
            **event,
            "event_id": event_id,
            "before": grant.transform(event["before"], op, now, tables),
            "after": grant.transform(event["after"], op, now, tables),
        }
        encoder, record_name = self._encoders(grant)
        value = encoder.encode(with_union_branches(view, record_name))
        headers = [
            ("xbus-event-id", _header(event_id)),
            ("xbus-grant-id", _header(grant.grant.grant)),
            ("xbus-grant-version", _header(grant.version)),
            *source,
        ]
        return Output(grant.topic, key, value, headers)

    def _dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, detail: str, source: Headers
    ) -> Output:
        DEAD_LETTERS.labels(reason).inc()
        return Output(
            DEAD_LETTER_TOPIC,
            key,
            value,
            [
                ("xbus-dlq-reason", _header(reason)),
                ("xbus-dlq-error", _header(detail)[:1000]),
                *source,
            ],
        )


class OutputWriter:
    """Writes a batch's outputs with librdkafka (idempotent, acks=all) and returns once Kafka
    acknowledged them all; raises if any was refused, so the batch is not acknowledged."""

    def __init__(self, settings: BusSettings) -> None:
        self._producer = Producer(settings.producer_config(**{"linger.ms": 2}))
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")

    def write(self, outputs: list[Output]) -> None:
        for o in outputs:
            produce(
                self._producer,
                o.topic,
                o.value,
                o.key,
                headers=o.headers,
                on_delivery=self._on_delivery,
            )
        remaining = self._producer.flush(120)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise XbusError(
                f"{remaining} write(s) unacknowledged and {len(failures)} refused "
                f"({'; '.join(failures[:3])}); the batch will be processed again"
            )


async def _route_until_done(engine: PolicyEngine, events: Sequence[Any]) -> list[Routing]:
    """Route a batch; while the registry is unavailable, wait and try again (with growing
    pauses) instead of dead-lettering good events: the batch is not acknowledged meanwhile."""
    delay = 0.5
    while True:
        try:
            return [
                engine.route(e.message.topic, e.message.partition, e.message.offset, e.key, e.value)
                for e in events
            ]
        except RegistryUnavailable as exc:
            log.warning("%s; trying again in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _credentials(settings: BusSettings) -> faust.SASLCredentials | None:
    """Faust's form of the bus's SASL settings (the same ones librdkafka clients get)."""
    if not settings.sasl_mechanism:
        return None
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    ssl_context = ssl.create_default_context() if settings.security_protocol == "SASL_SSL" else None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context,
    )


def build_app(
    settings: BusSettings,
    *,
    app_id: str = ENGINE_GROUP,
    on_new_source: Callable[[str], None] | None = None,
    discovery_interval: float = 10.0,
) -> faust.App:
    """The Faust app of one engine worker (``xbus run engine`` runs it in a ``faust.Worker``).

    Faust cannot subscribe by pattern, so the worker subscribes to the topic of every dataset
    it knows (its catalog and the registered datasets of existing ``gov.*`` topics, creating
    the catalog's topics if missing), and calls ``on_new_source(topic)`` when a ``gov.*``
    topic with a registered dataset appears later: ``xbus run engine`` then restarts the
    worker in place to subscribe to it."""
    registry = registry_client(settings)
    catalog = engine_catalog(settings, Catalog.load(settings.schemas_dir), registry)
    source_topics = sorted(d.topic for d in catalog)
    ensure_topics(
        settings,
        {t: 3 for t in source_topics} | {AUDIT_TOPIC: 3, DEAD_LETTER_TOPIC: 1, GRANTS_TOPIC: 1},
        config={GRANTS_TOPIC: {"cleanup.policy": "compact"}},
    )
    state = PolicyState(settings, catalog)
    state.start()
    if on_new_source is not None:
        SourceWatcher(
            settings, catalog, registry, set(source_topics), on_new_source, discovery_interval
        ).start()
    engine = PolicyEngine(state.snapshot, WriterSchemas(registry), ViewEncoders(registry))
    app = faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        producer_acks=-1,
    )
    sources = app.topic(*source_topics, key_serializer="raw", value_serializer="raw")
    writer = OutputWriter(settings)
    known_topics: set[str] = set()

    @app.on_partitions_assigned.connect
    async def count_partitions(_: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        ENGINE_PARTITIONS.set(sum(1 for tp in assigned if tp.topic in source_topics))

    @app.agent(sources)
    async def apply_grants(stream: faust.StreamT[bytes]) -> None:
        deadline = time.monotonic() + 60
        while not state.caught_up.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if not state.caught_up.is_set():
            log.warning("grants not read to their end within 60s; going on with what is known")
        # Events are taken in small batches: every write of a batch is sent, then all are
        # awaited, and only then does Faust acknowledge the batch's events (at least once,
        # without waiting for Kafka once per event).
        batches = cast(faust.Stream[bytes], stream).take_events(BATCH, within=BATCH_WAIT)
        async for events in batches:
            started = time.perf_counter()
            routings = await _route_until_done(engine, events)
            missing = {o.topic for r in routings for _, o in r.deliveries} - known_topics
            if missing:
                ensure_topics(settings, {t: 3 for t in missing})
                known_topics.update(missing)
            loop = asyncio.get_running_loop()
            # Acknowledged by Kafka before the offsets move on; the wait runs off the event loop.
            await loop.run_in_executor(None, writer.write, [o for r in routings for o in r.outputs])
            elapsed = time.perf_counter() - started
            for routing in routings:
                for grant, _ in routing.deliveries:
                    subscriber, dataset = grant.grant.subscriber, grant.dataset.name
                    _child(EVENTS_DELIVERED, subscriber, dataset, "topic").inc()
                ENGINE_LATENCY.observe(elapsed)

    return app
