"""The engine's hot path on the real broker and registry, in process: a registry that does
not answer holds the batch, which is delivered once it does; a subscriber topic that refuses
the engine's writes holds the stream, which goes on with nothing lost once the topic takes
them; and a stop commits what was done."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client import REGISTRY

from tests.conftest import Bus
from tests.support.components import wait_for
from tests.support.kafka_reading import read_events
from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op
from xbus.core.errors import RegistryUnavailable
from xbus.core.serde import WriterSchemas, registry_client
from xbus.producers.publisher import Publisher
from xbus.streams.audit import AuditChains
from xbus.streams.grants import Grant
from xbus.streams.hot_path import HotPath, OutputWriter, Sources
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.routing import Router, ViewEncoders
from xbus.streams.state import PolicySnapshot

pytestmark = pytest.mark.broker


@dataclass
class Department:
    """A department of its own for one test: its catalog, source topic and the subscriber's
    topic under one grant."""

    name: str
    catalog: Catalog
    source: str
    delivery: str
    grant: CompiledGrant


@pytest.fixture()
def department(registered: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Department:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "hot-path-test-secret-key")
    name = f"hot_{uuid.uuid4().hex[:6]}"
    (tmp_path / "schemas" / name).mkdir(parents=True)
    (tmp_path / "schemas" / name / "item.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Item",
                "namespace": f"gov.{name}",
                "xbus.department": name,
                "xbus.business_key": ["item_id"],
                "xbus.sharing": "unconditional",
                "fields": [
                    {"name": "item_id", "type": "string", "classification": "public"},
                    {"name": "label", "type": "string", "classification": "public"},
                    {"name": "owner_id", "type": "string", "classification": "personal"},
                ],
            }
        )
    )
    catalog = Catalog.load(tmp_path / "schemas")
    register_catalog(catalog, registry_client(registered.settings))
    grant = check_and_compile(
        Grant.model_validate(
            {
                "grant": f"{name.replace('_', '-')}-viewer",
                "subscriber": f"viewer_{name}",
                "dataset": f"{name}.item",
                "purpose": "p",
                "legal_basis": "l",
                "valid_from": "2026-01-01T00:00:00+08:00",
                "fields": {"item_id": {}, "label": {}, "owner_id": {"mask": {"type": "hash"}}},
            }
        ),
        catalog,
    )
    assert isinstance(grant, CompiledGrant), grant
    source = f"gov.{name}.item"
    ensure_topics(registered.settings, {source: 3})
    return Department(name, catalog, source, f"deliver.viewer_{name}.item", grant)


class _FlakyRegistry:
    """Writer schemas from the real registry, after ``failures`` calls that fail as a
    registry that does not answer."""

    def __init__(self, schemas: WriterSchemas, failures: int) -> None:
        self._schemas, self.failures = schemas, failures

    def schema(self, schema_id: int) -> dict[str, Any]:
        return self._schemas.schema(schema_id)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise RegistryUnavailable("the registry does not answer (test)")
        return self._schemas.decode(value)


@pytest.fixture()
def hot_path(
    registered: Bus, department: Department, request: pytest.FixtureRequest
) -> Iterator[tuple[HotPath, str]]:
    settings = registered.settings
    registry = registry_client(settings)
    decoder = _FlakyRegistry(WriterSchemas(registry), getattr(request, "param", 0))
    snapshot = PolicySnapshot({department.source: (department.grant,)}, {})
    chains = AuditChains()
    group = f"hot-path-{department.name}"
    path = HotPath(
        settings,
        group,
        Router(lambda: snapshot, decoder, ViewEncoders(registry), chains),
        chains,
        Sources({department.source}, lambda _: None, lambda _: None),
        OutputWriter(settings),
        pattern=f"^gov\\.{department.name}\\.",
    )
    thread = threading.Thread(target=path.run, daemon=True)
    thread.start()
    yield path, group
    path.stop()
    thread.join(60)
    assert path.finished.is_set()


def _publish(bus: Bus, department: Department, count: int) -> set[str]:
    with Publisher(
        department.name, system="hot-path-test", settings=bus.settings, catalog=department.catalog
    ) as p:
        return {
            p.publish_sync(
                "item",
                Op.CREATE,
                after={
                    "item_id": f"i{n}",
                    "label": f"第{n}件",
                    "owner_id": f"31010119900101{n:04d}",
                },
            ).event_id
            for n in range(count)
        }


@pytest.mark.parametrize("hot_path", [3], indirect=True)
def test_a_registry_outage_holds_the_batch_and_loses_nothing(
    registered: Bus, department: Department, hot_path: tuple[HotPath, str]
) -> None:
    ids = _publish(registered, department, 40)
    got = read_events(registered.settings, department.delivery, ids, 90)
    assert got.keys() == ids
    assert all(len(view["after"]["owner_id"]) > 60 for _, view in got.values())  # hashed


def _committed(bus: Bus, group: str, topic: str) -> int:
    """How many of ``topic``'s records group ``group`` has committed."""
    consumer = Consumer(bus.settings.consumer_config(group))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def _refused() -> float:
    return REGISTRY.get_sample_value("xbus_engine_writes_refused_total") or 0.0


def test_refused_writes_hold_the_stream_until_the_topic_takes_them(
    registered: Bus, department: Department, hot_path: tuple[HotPath, str]
) -> None:
    settings, (_, group) = registered.settings, hot_path
    # The subscriber's topic refuses records over 100 bytes: every view.
    ensure_topics(
        settings,
        {department.delivery: 1},
        config={department.delivery: {"max.message.bytes": "100"}},
    )
    refused_before = _refused()
    ids = _publish(registered, department, 30)
    wait_for(lambda: _refused() > refused_before, 60, "the engine's writes to be refused")
    assert _committed(registered, group, department.source) == 0, "nothing may be committed"
    admin = AdminClient(settings.kafka_config())
    entry = ConfigEntry("max.message.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(
        ConfigResource.Type.TOPIC, department.delivery, incremental_configs=[entry]
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    got = read_events(settings, department.delivery, ids, 120)
    assert got.keys() == ids
    wait_for(
        lambda: _committed(registered, group, department.source) == 30, 60, "the offsets committed"
    )
