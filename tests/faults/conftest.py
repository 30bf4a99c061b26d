"""The fault tests' cluster: the three Kafka nodes of the stack they run on
(``xbus stack exec --brokers 3``, which gives its folder in ``XBUS_STACK_DATA_DIR``), stopped,
killed and started again by ``xbus stack broker`` as an operator would."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.conftest import Bus, _missing
from tests.support.components import run_xbus, wait_for
from xbus.deploy.stack import LocalStack

NODES = 3


@dataclass
class Cluster:
    """The stack's Kafka nodes, as the tests see and act on them."""

    bus: Bus
    stack: LocalStack

    def _broker(self, act: str, node: int) -> None:
        result = run_xbus(self.bus.env(), "stack", "broker", act, str(node), timeout=180)
        assert result.returncode == 0, f"xbus stack broker {act} {node}: {result.stderr}"

    def kill(self, node: int) -> None:
        """SIGKILL node ``node``, as a crash would."""
        self._broker("kill", node)

    def stop(self, node: int) -> None:
        """Stop node ``node`` cleanly."""
        self._broker("stop", node)

    def start(self, node: int) -> None:
        """Start node ``node`` again; returns once it answers."""
        self._broker("start", node)

    def down(self) -> list[int]:
        """The nodes whose process is not running."""
        return [n for n, node in self.stack.kafka.nodes.items() if not node.running]

    def leaders(self, topic: str) -> Counter[int]:
        """How many of ``topic``'s partitions each node leads."""
        metadata = AdminClient(self.bus.settings.kafka_config()).list_topics(topic, timeout=30)
        return Counter(p.leader for p in metadata.topics[topic].partitions.values())

    def busiest(self, topic: str) -> int:
        """The node that leads most of ``topic``'s partitions."""
        return self.leaders(topic).most_common(1)[0][0]

    def wait_in_sync(self, timeout: float = 120) -> None:
        """Wait until every partition of every topic has all its replicas in sync again."""

        def in_sync() -> bool:
            admin = AdminClient(self.bus.settings.kafka_config())
            topics = admin.list_topics(timeout=10).topics.values()
            return all(
                len(p.isrs) == len(p.replicas) for t in topics for p in t.partitions.values()
            )

        wait_for(in_sync, timeout, "every replica back in sync")


# What the fault suite measured, printed at the end of the run (``make faults`` shows it
# without ``-s``).
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault suite: what was measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster(bus: Bus) -> Cluster:
    folder = os.environ.get("XBUS_STACK_DATA_DIR")
    brokers = AdminClient(bus.settings.kafka_config()).list_topics(timeout=30).brokers
    if not folder or len(brokers) < NODES:
        _missing(
            f"a cluster of {NODES} Kafka nodes the tests can stop (found {len(brokers)} "
            f"broker(s){'' if folder else ', no XBUS_STACK_DATA_DIR'}): run them under "
            f"xbus stack exec --brokers {NODES}, as make test and make faults do",
            needed=f"a cluster of {NODES} Kafka nodes",
        )
    return Cluster(bus, LocalStack.attach(Path(str(folder))))


@pytest.fixture(autouse=True)
def every_node_up(cluster: Cluster) -> Iterator[None]:
    """Each test starts and leaves with every node running and every replica in sync."""
    yield
    for node in cluster.down():
        cluster.start(node)
    started = time.monotonic()
    cluster.wait_in_sync()
    if time.monotonic() - started > 1:
        print(f"replicas back in sync after {time.monotonic() - started:.0f}s")
