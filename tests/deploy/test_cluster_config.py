"""What the launcher gives a cluster's nodes, and what it says when asked for the wrong
shape, without starting anything (the cluster itself runs in ``tests/faults``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xbus.deploy.errors import LauncherError
from xbus.deploy.kafka import KafkaCluster, KafkaConfig, server_properties
from xbus.deploy.stack import LocalStack, StackSettings


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _stack(tmp_path: Path, brokers: int) -> LocalStack:
    settings = StackSettings(brokers=brokers, home=tmp_path / "home", secured=False)
    return LocalStack(settings, tmp_path / "data")


def test_each_node_of_three_votes_in_one_quorum_and_topics_need_two_in_sync(
    tmp_path: Path,
) -> None:
    stack = _stack(tmp_path, 3)
    second = stack.kafka.node(2).config
    props = _properties(server_properties(second))
    assert props["node.id"] == "2"
    assert (
        props["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:19093,3@127.0.0.1:29093"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert second.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:19092,127.0.0.1:29092"
    assert second.data_dir == tmp_path / "data" / "kafka" / "node-2"
    assert second.metrics_port == 19404


def test_one_broker_keeps_one_replica_and_its_own_folder(tmp_path: Path) -> None:
    config = _stack(tmp_path, 1).kafka.config
    props = _properties(server_properties(config))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("1", "1")
    assert config.bootstrap_servers == "127.0.0.1:9092"
    assert config.data_dir == tmp_path / "data" / "kafka"


def test_a_throw_away_cluster_takes_free_ports_of_its_own(tmp_path: Path) -> None:
    stack = LocalStack.ephemeral(StackSettings(brokers=3, home=tmp_path))
    try:
        ports = [p for node in stack.node_ports().values() for p in node]
    finally:
        stack.remove_data()
    assert len(ports) == len(set(ports)) == 9


def test_a_node_the_cluster_has_not_is_named_with_those_it_has(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="no Kafka node 4: the cluster's nodes are 1, 2, 3"):
        _stack(tmp_path, 3).kafka.node(4)
    with pytest.raises(LauncherError, match="at least one node"):
        KafkaCluster([])


def test_a_one_broker_data_dir_is_not_started_as_a_cluster_nor_the_reverse(
    tmp_path: Path,
) -> None:
    (tmp_path / "data" / "kafka" / "log").mkdir(parents=True)
    with pytest.raises(LauncherError, match="one broker, not a cluster of 3"):
        _stack(tmp_path, 3).start()
    other = tmp_path / "other"
    (other / "data" / "kafka" / "node-2").mkdir(parents=True)
    with pytest.raises(LauncherError, match="cluster of several brokers"):
        _stack(other, 1).start()


def test_acting_on_a_stack_that_was_never_started_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match=r"no stack\.json.*make run"):
        LocalStack.attach(tmp_path)


def test_how_a_stack_was_started_is_read_back_by_another_process(tmp_path: Path) -> None:
    settings = StackSettings(brokers=3, home=tmp_path, node_ports={2: (1, 2, 3), 3: (4, 5, 6)})
    (tmp_path / "stack.json").write_text(settings.model_dump_json())
    attached = LocalStack.attach(tmp_path)
    assert attached.node_ports()[3] == (4, 5, 6)
    assert sorted(attached.kafka.nodes) == [1, 2, 3]


def test_a_single_node_config_is_its_own_cluster() -> None:
    config = KafkaConfig(port=7000, controller_port=7001)
    assert config.members == ((1, 7000, 7001),)
    assert config.replicas == 1
