"""The policy engine as a Faust app: ``gov.*`` in, ``deliver.<subscriber>.<dataset>`` out.

At least once: an event's offset is committed only after the agent has finished with it,
and the agent finishes only after Kafka acknowledged every write it made for the event.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import faust

from streams.grant import TAX_BUREAU_LICENCES, Grant, apply_grant, view_schema
from xbus.admin import ensure_topics
from xbus.catalog import Catalog
from xbus.metrics import EVENTS_DELIVERED
from xbus.serde import EventDeserializer, EventSerializer, registry_client, value_context
from xbus.settings import BusSettings

log = logging.getLogger(__name__)

ENGINE_GROUP = "xbus-engine"


class PolicyEngine:
    """Decodes each change event, applies every grant of its dataset and writes the results."""

    def __init__(self, settings: BusSettings, grants: list[Grant] | None = None) -> None:
        self.settings = settings
        self.catalog = Catalog.load(settings.schemas_dir)
        self.grants = grants if grants is not None else [TAX_BUREAU_LICENCES]
        registry = registry_client(settings)
        self._decode = EventDeserializer(registry)
        self._encoders: dict[str, EventSerializer] = {}
        for grant in self.grants:
            dataset = self.catalog.get(grant.department, grant.dataset)
            self._encoders[grant.grant_id] = EventSerializer(
                registry, view_schema(dataset, grant, self.catalog.envelope)
            )

    def grants_for(self, topic: str) -> list[Grant]:
        """The grants on the dataset of source topic ``topic``."""
        return [g for g in self.grants if f"gov.{g.department}.{g.dataset}" == topic]

    def route(self, topic: str, value: bytes) -> list[tuple[Grant, bytes]]:
        """What each subscriber receives of one raw source message, encoded for its topic."""
        grants = self.grants_for(topic)
        if not grants:
            return []
        event: dict[str, Any] = self._decode(value, value_context(topic))
        return [
            (g, self._encoders[g.grant_id](apply_grant(event, g), value_context(g.topic)))
            for g in grants
        ]


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


def build_app(settings: BusSettings, *, app_id: str = ENGINE_GROUP) -> faust.App:
    """The Faust app of one engine worker (``xbus run engine`` runs it in a ``faust.Worker``)."""
    engine = PolicyEngine(settings)
    # Faust cannot subscribe by pattern, so the engine subscribes to the topic of every
    # dataset in the catalog, creating any that no department has published to yet.
    source_topics = sorted(d.topic for d in engine.catalog)
    ensure_topics(settings, {t: 3 for t in source_topics} | {g.topic: 3 for g in engine.grants})
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
    outputs = {
        g.grant_id: app.topic(g.topic, key_serializer="raw", value_serializer="raw")
        for g in engine.grants
    }

    @app.agent(sources)
    async def apply_grants(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            pending = []
            for grant, encoded in engine.route(message.topic, event.value):
                pending.append(
                    (grant, await outputs[grant.grant_id].send(key=event.key, value=encoded))
                )
            for grant, sent in pending:
                await sent  # acknowledged by Kafka before the offset may move on
                EVENTS_DELIVERED.labels(grant.subscriber, grant.dataset, "topic").inc()

    return app
