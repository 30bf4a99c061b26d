"""Kafka nodes lost under a running bus: with two of three down, publishers get a typed,
retriable error in bounded time (the gateway a 503 with Retry-After), and publishing resumes
by itself when a node returns. (With one down the bus goes on publishing, routing and
delivering: the fault suite's first fault, in ``test_fault_suite.py``.)"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.conftest import Bus
from tests.faults.conftest import Cluster
from tests.producers.test_gateway import EVENTS, start_gateway
from tests.support.components import wait_for
from xbus.core.admin import ensure_topics
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.exceptions import BrokerUnreachable
from xbus.producers.publisher import Publisher


def test_a_clusters_topics_have_three_replicas_and_need_two_in_sync(cluster: Cluster) -> None:
    topic = f"cluster-{uuid.uuid4().hex[:8]}"
    ensure_topics(cluster.bus.settings, {topic: 4})
    admin = AdminClient(cluster.bus.settings.kafka_config())
    partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions.values()
    [config] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    assert [len(p.replicas) for p in partitions] == [3, 3, 3, 3]
    assert config.result(30)["min.insync.replicas"].value == "2"


def test_with_two_nodes_down_publishing_fails_retriably_and_resumes_by_itself(
    cluster: Cluster, registered: Bus
) -> None:
    data = DemoData(seed=14)
    settings = registered.settings
    with Publisher(
        "market_regulation", system="faults", settings=settings, delivery_timeout=8
    ) as publisher:
        publisher.publish_sync("business_licence", Op.CREATE, after=data.business_licence())
        _, *lost = sorted(cluster.stack.kafka.nodes)
        for node in lost:
            cluster.kill(node)
        started = time.monotonic()
        with pytest.raises(BrokerUnreachable) as refused:
            publisher.publish_sync("business_licence", Op.CREATE, after=data.business_licence())
        waited = time.monotonic() - started
        cluster.start(lost[0])

        def published() -> str | None:
            try:
                return publisher.publish_sync(
                    "business_licence", Op.CREATE, after=data.business_licence()
                ).event_id
            except BrokerUnreachable:
                return None

        wait_for(published, 120, "publishing to work again with two nodes up")
    assert refused.value.retriable
    assert waited < 8 + 10, f"the publisher waited {waited:.0f}s"


def test_with_two_nodes_down_the_gateway_answers_503_with_retry_after(
    cluster: Cluster, registered: Bus, tmp_path: Path
) -> None:
    data = DemoData(seed=15)
    env = {"XBUS_GATEWAY_DELIVERY_TIMEOUT": "5"}
    with contextmanager(start_gateway)(registered, tmp_path, "gateway", env) as gateway:
        body = {"op": "CREATE", "after": data.vaccination_record()}
        assert gateway.post(EVENTS, body).status_code == 202
        lost = sorted(cluster.stack.kafka.nodes)[1:]
        for node in lost:
            cluster.kill(node)
        started = time.monotonic()
        refused = gateway.post(EVENTS, {"op": "CREATE", "after": data.vaccination_record()})
        waited = time.monotonic() - started
        cluster.start(lost[0])
        wait_for(
            lambda: (
                gateway.post(
                    EVENTS, {"op": "CREATE", "after": data.vaccination_record()}
                ).status_code
                == 202
            ),
            120,
            "the gateway to accept events again",
        )
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert waited < 5 + 10, f"the gateway answered after {waited:.0f}s"
