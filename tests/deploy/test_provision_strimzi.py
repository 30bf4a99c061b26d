"""``xbus provision --format strimzi``: the Strimzi resources say exactly what ``xbus
provision`` would apply to an empty broker from the same file (no broker needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.support.checkout import ROOT as REPO
from xbus.cli.main import app
from xbus.core.catalog import Catalog
from xbus.deploy.provisioning.access import Acl, Principal, TopicSpec, principals, topics
from xbus.deploy.provisioning.bus_file import BusFile, load_bus_file
from xbus.deploy.provisioning.cluster import ClusterState, Plan, make_plan
from xbus.deploy.provisioning.errors import ProvisioningError
from xbus.deploy.provisioning.strimzi import resource_name, strimzi_resources

DEMO = REPO / "bus.yaml"
COMMITTED = REPO / "deploy" / "kubernetes" / "strimzi" / "bus.yaml"
_KAFKA_NAMES = {"topic": "TOPIC", "group": "GROUP", "literal": "LITERAL", "prefix": "PREFIXED"}


@pytest.fixture(scope="module")
def demo() -> BusFile:
    return load_bus_file(DEMO, Catalog.load(REPO / "schemas"), REPO / "grants")


@pytest.fixture(scope="module")
def demo_principals(demo: BusFile) -> list[Principal]:
    return principals(demo, REPO)


def _plan_on_an_empty_cluster(
    demo: BusFile, demo_principals: list[Principal], secrets: Path
) -> Plan:
    empty = ClusterState(topics={}, configs={}, users=frozenset(), acls=frozenset())
    return make_plan(empty, demo_principals, topics(demo), secrets)


def _resources(text: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in yaml.safe_load_all(text) if r["kind"] == kind]


def _topics_of(
    resources: list[dict[str, Any]],
) -> set[tuple[str, int, int | None, tuple[Any, ...]]]:
    return {
        (
            r["spec"]["topicName"],
            r["spec"]["partitions"],
            r["spec"].get("replicas"),
            tuple(sorted(r["spec"]["config"].items())),
        )
        for r in resources
    }


def _acls_of(resources: list[dict[str, Any]], users: dict[str, str]) -> set[Acl]:
    """The ACLs the KafkaUsers grant, as provisioning's own ``Acl`` (user by its name in the
    file, through ``users``: resource name -> user)."""
    found = set()
    for r in resources:
        assert r["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert r["spec"]["authorization"]["type"] == "simple"
        for rule in r["spec"]["authorization"]["acls"]:
            for operation in rule["operations"]:
                found.add(
                    Acl(
                        users[r["metadata"]["name"]],
                        _KAFKA_NAMES[rule["resource"]["type"]],
                        rule["resource"]["name"],
                        _KAFKA_NAMES[rule["resource"]["patternType"]],
                        # DescribeConfigs -> DESCRIBE_CONFIGS
                        re.sub(r"(?<=[a-z])(?=[A-Z])", "_", operation).upper(),
                        rule["type"].upper(),
                        rule["host"],
                    )
                )
    return found


def _generate(*args: str) -> str:
    result = CliRunner().invoke(
        app, ["provision", "--format", "strimzi", "--file", str(DEMO), *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_topic_of_the_plan_is_a_kafka_topic_and_nothing_else(
    demo: BusFile, demo_principals: list[Principal], tmp_path: Path
) -> None:
    plan = _plan_on_an_empty_cluster(demo, demo_principals, tmp_path)
    wanted = {
        (t.name, t.partitions, demo.replication_factor, tuple(sorted(t.config.items())))
        for t in plan.topics_to_create
    }
    generated = _topics_of(_resources(_generate(), "KafkaTopic"))
    assert generated == wanted
    assert "_xbus.grants" in {name for name, *_ in generated}
    # Each dataset's, the bus's own, each subscriber's and each department's dead letters.
    assert len(generated) == len(plan.topics_to_create) == 7 + 4 + 6 + 5


def test_every_acl_of_the_plan_is_in_a_kafka_user_and_nothing_else(
    demo: BusFile, demo_principals: list[Principal], tmp_path: Path
) -> None:
    plan = _plan_on_an_empty_cluster(demo, demo_principals, tmp_path)
    users = {resource_name(p.user): p.user for p in demo_principals}
    kafka_users = _resources(_generate(), "KafkaUser")
    assert {users[r["metadata"]["name"]] for r in kafka_users} == {p.user for p in plan.passwords}
    assert _acls_of(kafka_users, users) == set(plan.acls_to_add)
    assert len(plan.acls_to_add) > 60  # the demo's least-privilege ACLs, not a handful


def test_every_resource_is_labelled_for_the_cluster_it_names() -> None:
    for resource in yaml.safe_load_all(_generate("--cluster", "city-bus")):
        assert resource["metadata"]["labels"] == {"strimzi.io/cluster": "city-bus"}


def test_the_committed_resources_are_a_fresh_generation_from_bus_yaml() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == _generate(), (
        "deploy/kubernetes/strimzi/bus.yaml is stale: make it again with `make manifests`"
    )


def test_a_user_with_a_password_file_reads_it_from_a_secret() -> None:
    principal = Principal("subscriber.tax_bureau", Path("tax.password"))
    (user,) = strimzi_resources([principal], [], 3, "xbus")
    assert user["metadata"]["name"] == "subscriber.tax-bureau"
    assert user["spec"]["authentication"]["password"] == {
        "valueFrom": {"secretKeyRef": {"name": "subscriber.tax-bureau-password", "key": "password"}}
    }


def test_resource_names_are_kubernetes_names() -> None:
    assert resource_name("_xbus.dead-letters") == "xbus.dead-letters"
    assert resource_name("deliver.tax_bureau._dead_letters") == "deliver.tax-bureau.dead-letters"
    assert resource_name("department.market_regulation") == "department.market-regulation"


def test_two_topics_with_one_resource_name_are_refused() -> None:
    clash = [TopicSpec("_xbus.audit", 1, {}), TopicSpec("xbus.audit", 1, {})]
    with pytest.raises(ProvisioningError, match="_xbus.audit, xbus.audit -> xbus.audit"):
        strimzi_resources([], clash, 1, "xbus")


def test_the_broker_options_are_refused_with_the_strimzi_format() -> None:
    result = CliRunner().invoke(app, ["provision", "--format", "strimzi", "--plan"])
    assert result.exit_code == 2
    assert "act on a broker" in result.output
