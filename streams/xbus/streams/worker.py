"""The engine's worker: a Faust app as its shell around the hot path.

Faust runs the worker's lifecycle (start, signals, a clean stop) and starts no Kafka client:
the routing runs on librdkafka in ``xbus.streams.hot_path``, on a thread of its own, with
``Router`` (``xbus.streams.routing``) deciding what each event leads to and ``OutputWriter``
writing it all. A background thread follows the grants and reference
tables (``xbus.streams.state``).

At least once: a batch's offsets are stored for commit only after Kafka acknowledged every
write made for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import Service

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.serde import WriterSchemas, registry_client
from xbus.core.settings import BusSettings, home_dir
from xbus.core.topics import AUDIT_TOPIC, DEAD_LETTER_TOPIC, GRANTS_TOPIC
from xbus.streams.audit import AuditChains
from xbus.streams.audit_trail import recover_heads
from xbus.streams.hot_path import HotPath, OutputWriter, Sources
from xbus.streams.routing import Router, ViewEncoders
from xbus.streams.sources import engine_catalog, registered_dataset
from xbus.streams.state import PolicyState

log = logging.getLogger(__name__)

ENGINE_GROUP = "xbus-engine"


class _EngineBoot(BootStrategy):
    """Faust starts no Kafka client of its own: the hot path owns the engine's consumer and
    producer."""

    enable_kafka = False


class EngineApp(faust.App):
    """The engine worker's Faust app: lifecycle, signals and timers, no Kafka streams."""

    BootStrategy = _EngineBoot


class _HotPathService(Service):
    """Runs the hot path on its own thread while the worker runs; if it fails, the worker
    crashes (and is restarted by whoever runs it) rather than idling without routing."""

    def __init__(self, hot_path: HotPath, state: PolicyState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot_path, self._state = hot_path, state

    async def on_start(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._hot_path.run)
        except Exception as exc:
            log.exception("the engine's hot path failed")
            await self.crash(exc)

    async def on_stop(self) -> None:
        # The hot path leaves the group with its done offsets committed before the worker
        # exits.
        self._hot_path.stop()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._hot_path.finished.wait, 30.0)
        await loop.run_in_executor(None, self._state.stop)


def build_app(
    settings: BusSettings,
    *,
    app_id: str = ENGINE_GROUP,
    discovery_interval: float = 10.0,
) -> faust.App:
    """The Faust app of one engine worker (``xbus run engine`` runs it in a ``faust.Worker``),
    its hot path consuming every ``gov.*`` topic as consumer group ``app_id``.

    The catalog's source topics are made if missing; a ``gov.*`` topic that appears later is
    picked up on the consumer's next metadata refresh (every ``discovery_interval`` seconds),
    routed once its dataset is registered."""
    registry = registry_client(settings)
    catalog = engine_catalog(settings, Catalog.load(settings.schemas_dir), registry)
    ensure_topics(
        settings,
        {d.topic: settings.source_partitions for d in catalog}
        | {AUDIT_TOPIC: 3, DEAD_LETTER_TOPIC: 1, GRANTS_TOPIC: 1},
        config={GRANTS_TOPIC: {"cleanup.policy": "compact"}},
    )
    state = PolicyState(settings, catalog)
    state.start()
    # One chain per source partition, extended only by the worker it is assigned to; its
    # head is read back from the audit topic before the worker's first batch of it.
    chains = AuditChains(lambda missing: recover_heads(settings, missing))
    router = Router(state.snapshot, WriterSchemas(registry), ViewEncoders(registry), chains)
    sources = Sources(
        {d.topic for d in catalog},
        lambda topic: registered_dataset(registry, topic, catalog),
        state.learn,
    )
    hot_path = HotPath(
        settings,
        app_id,
        router,
        chains,
        sources,
        OutputWriter(settings),
        ready=state.caught_up,
        discovery_interval=discovery_interval,
    )
    # Faust keeps a folder per app (it makes only the last level): in the stack's working
    # folder, not wherever the worker runs.
    datadir = home_dir() / "engine" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = EngineApp(app_id, store="memory://", datadir=str(datadir), web_enabled=False)
    app.add_dependency(_HotPathService(hot_path, state, loop=app.loop))
    return app
