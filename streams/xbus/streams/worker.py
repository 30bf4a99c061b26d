"""The engine's worker: the Faust app around the routing.

Faust is the worker's shell: it joins the consumer group, takes the source partitions it is
assigned, hands events over in batches and commits their offsets. The work runs on
librdkafka: ``Router`` (``xbus.streams.routing``) decides what each event leads to, and
``OutputWriter`` writes it all with one librdkafka producer. A background thread follows the
grants and reference tables (``xbus.streams.state``), another looks for new source topics.

At least once: the agent finishes with a batch of events, and so lets their offsets be
committed, only after Kafka acknowledged every write made for them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import faust
from confluent_kafka import Producer

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.errors import RegistryUnavailable
from xbus.core.metrics import ENGINE_LATENCY, ENGINE_PARTITIONS, EVENTS_DELIVERED
from xbus.core.producing import produce_and_confirm
from xbus.core.serde import WriterSchemas, registry_client
from xbus.core.settings import BusSettings, home_dir
from xbus.core.topics import AUDIT_TOPIC, DEAD_LETTER_TOPIC, DELIVERY_PREFIX, GRANTS_TOPIC
from xbus.streams.audit import AuditChains, chain_of
from xbus.streams.audit_trail import recover_heads
from xbus.streams.routing import Output, Router, Routing, ViewEncoders, metric_child
from xbus.streams.sources import SourceWatcher, engine_catalog
from xbus.streams.state import PolicyState

log = logging.getLogger(__name__)

ENGINE_GROUP = "xbus-engine"
BATCH = 500
BATCH_WAIT = 0.01
WRITE_TIMEOUT = 120.0


class OutputWriter:
    """Writes a batch's outputs with librdkafka (idempotent, acks=all) and returns once Kafka
    acknowledged them all; raises ``Unacknowledged`` if any was not taken, so the batch is
    not acknowledged either."""

    def __init__(self, settings: BusSettings) -> None:
        self._producer = Producer(settings.producer_config(**{"linger.ms": 2}))

    def write(self, outputs: list[Output]) -> None:
        produce_and_confirm(
            self._producer,
            outputs,
            timeout=WRITE_TIMEOUT,
            what=f"the {len(outputs)} writes of a batch, whose events stay unacknowledged",
        )


async def _route_until_done(
    router: Router, events: Sequence[Any], chains: AuditChains
) -> list[Routing]:
    """Route a batch; while the registry is unavailable, wait and try again (with growing
    pauses) instead of dead-lettering good events: the batch is not acknowledged meanwhile,
    and the audit records it sealed are dropped with the chains' heads put back."""
    delay = 0.5
    mark = chains.mark()
    while True:
        try:
            return [
                router.route(e.message.topic, e.message.partition, e.message.offset, e.key, e.value)
                for e in events
            ]
        except RegistryUnavailable as exc:
            chains.restore(mark)
            log.warning("%s; trying again in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _credentials(settings: BusSettings) -> faust.SASLCredentials | None:
    """Faust's form of the bus's SASL settings (the same ones librdkafka clients get)."""
    if not settings.sasl_mechanism:
        return None
    ssl_context = None
    if settings.security_protocol == "SASL_SSL":
        ca = settings.ssl_ca_location
        ssl_context = ssl.create_default_context(cafile=str(ca) if ca else None)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.kafka_password(),
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
    # One chain per source partition, extended only by the worker it is assigned to; its
    # head is read back from the audit topic before the worker's first batch of it.
    chains = AuditChains(lambda missing: recover_heads(settings, missing))
    router = Router(state.snapshot, WriterSchemas(registry), ViewEncoders(registry), chains)
    # Faust keeps a folder per app (it makes only the last level): in the stack's working
    # folder, not wherever the worker runs.
    datadir = home_dir() / "engine" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        producer_acks=-1,
    )
    sources = app.topic(*source_topics, key_serializer="raw", value_serializer="raw")
    writer = OutputWriter(settings)
    known_topics: set[str] = set()

    @app.on_partitions_assigned.connect
    async def on_assignment(_: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        ENGINE_PARTITIONS.set(sum(1 for tp in assigned if tp.topic in source_topics))
        # A partition this worker held before may have been extended by another since.
        chains.forget()

    async def _write(routings: list[Routing]) -> None:
        # The subscribers' topics, and their dead-letter topics (one partition: a few
        # letters, read in order), made on first write.
        missing = {
            o.topic for r in routings for o in r.outputs if o.topic.startswith(DELIVERY_PREFIX)
        } - known_topics
        if missing:
            ensure_topics(settings, {t: 1 if t.endswith("._dead_letters") else 3 for t in missing})
            known_topics.update(missing)
        # Acknowledged by Kafka before the offsets move on; the wait runs off the event loop.
        outputs = [o for r in routings for o in r.outputs]
        await asyncio.get_running_loop().run_in_executor(None, writer.write, outputs)

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
            loop = asyncio.get_running_loop()
            touched = {chain_of(e.message.topic, e.message.partition) for e in events}
            await loop.run_in_executor(None, chains.prepare, touched)
            routings = await _route_until_done(router, events, chains)
            try:
                await _write(routings)
            except BaseException:
                # Some of the batch's audit records may be written, some not: its chains'
                # heads are read back from the topic before they are extended again.
                chains.forget(touched)
                raise
            elapsed = time.perf_counter() - started
            for routing in routings:
                for grant, _ in routing.deliveries:
                    subscriber, dataset = grant.grant.subscriber, grant.dataset.name
                    metric_child(EVENTS_DELIVERED, subscriber, dataset, "topic").inc()
                ENGINE_LATENCY.observe(elapsed)

    return app
