"""What the provisioning file implies, as Strimzi resources: a ``KafkaTopic`` per topic and a
``KafkaUser`` (SCRAM-SHA-512, with its ACLs) per principal, for a cluster whose Topic and
User Operators apply them.

Made from the same ``topics`` and ``principals`` that ``xbus provision`` applies to a broker,
so the two cannot tell different stories. Two things differ because Kubernetes names allow
neither ``_`` nor a leading ``.``/``-``: each resource carries a name made safe
(:func:`resource_name`); a topic keeps its Kafka name in ``spec.topicName``, but a Strimzi
user *is* its resource's name, so ``department.market_regulation`` logs in as
``department.market-regulation`` on such a cluster. Its ACLs are unchanged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from .access import Acl, Principal, TopicSpec
from .errors import ProvisioningError

API_VERSION = "kafka.strimzi.io/v1"
CLUSTER_LABEL = "strimzi.io/cluster"
# The key of the password in the Secret a ``password_file`` entry points the User Operator to.
PASSWORD_KEY = "password"

# Kafka's names for ACL resources and pattern types, as Strimzi spells them.
_RESOURCE_TYPES = {
    "TOPIC": "topic",
    "GROUP": "group",
    "CLUSTER": "cluster",
    "TRANSACTIONAL_ID": "transactionalId",
}
_PATTERN_TYPES = {"LITERAL": "literal", "PREFIXED": "prefix"}
_NOT_IN_A_NAME = re.compile(r"[^a-z0-9.-]+")


def resource_name(name: str) -> str:
    """``name`` (a topic or user) as a Kubernetes resource name: lower case, ``_`` as ``-``,
    each dot-separated part starting and ending with a letter or digit
    (``_xbus.dead-letters`` becomes ``xbus.dead-letters``)."""
    parts = (_NOT_IN_A_NAME.sub("-", part.lower()).strip("-") for part in name.split("."))
    return ".".join(part for part in parts if part)


def _operation(kafka_name: str) -> str:
    # READ -> Read, DESCRIBE_CONFIGS -> DescribeConfigs
    return "".join(word.title() for word in kafka_name.split("_"))


def _acl_rules(acls: frozenset[Acl]) -> list[dict[str, Any]]:
    """One Strimzi rule per resource, with its operations together."""
    grouped: dict[tuple[str, str, str, str, str], list[str]] = defaultdict(list)
    for acl in acls:
        key = (acl.resource, acl.name, acl.pattern, acl.host, acl.permission)
        grouped[key].append(acl.operation)
    rules = []
    for (resource, name, pattern, host, permission), operations in sorted(grouped.items()):
        rules.append(
            {
                "resource": {
                    "type": _RESOURCE_TYPES[resource],
                    "name": name,
                    "patternType": _PATTERN_TYPES[pattern],
                },
                "operations": sorted(_operation(op) for op in operations),
                "host": host,
                "type": permission.lower(),
            }
        )
    return rules


def _metadata(name: str, cluster: str) -> dict[str, Any]:
    return {"name": resource_name(name), "labels": {CLUSTER_LABEL: cluster}}


def kafka_topic(topic: TopicSpec, replication_factor: int | None, cluster: str) -> dict[str, Any]:
    """The ``KafkaTopic`` of one topic the file makes (no ``replicas``: the cluster's
    default)."""
    spec: dict[str, Any] = {"topicName": topic.name, "partitions": topic.partitions}
    if replication_factor is not None:
        spec["replicas"] = replication_factor
    spec["config"] = dict(sorted(topic.config.items()))
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaTopic",
        "metadata": _metadata(topic.name, cluster),
        "spec": spec,
    }


def kafka_user(principal: Principal, cluster: str) -> dict[str, Any]:
    """The ``KafkaUser`` of one principal: SCRAM-SHA-512 and its ACLs. The User Operator
    generates its password into a Secret of the user's name, unless the file names a
    ``password_file``: then the password is read from the Secret ``<name>-password`` (key
    ``password``), which the office makes from that file."""
    authentication: dict[str, Any] = {"type": "scram-sha-512"}
    if principal.password_file is not None:
        secret = f"{resource_name(principal.user)}-password"
        authentication["password"] = {
            "valueFrom": {"secretKeyRef": {"name": secret, "key": PASSWORD_KEY}}
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaUser",
        "metadata": _metadata(principal.user, cluster),
        "spec": {
            "authentication": authentication,
            "authorization": {"type": "simple", "acls": _acl_rules(principal.acls)},
        },
    }


def strimzi_resources(
    principals: list[Principal],
    topics: list[TopicSpec],
    replication_factor: int | None,
    cluster: str,
) -> list[dict[str, Any]]:
    """Every topic as a ``KafkaTopic``, then every principal as a ``KafkaUser``, labelled for
    the Strimzi cluster ``cluster``. Raises ``ProvisioningError`` if two topics or two users
    would get the same resource name."""
    resources = [kafka_topic(t, replication_factor, cluster) for t in topics]
    resources += [kafka_user(p, cluster) for p in principals]
    named = {"topics": [t.name for t in topics], "users": [p.user for p in principals]}
    for kind, names in named.items():
        by_resource: dict[str, list[str]] = defaultdict(list)
        for name in names:
            by_resource[resource_name(name)].append(name)
        clashes = [f"{', '.join(n)} -> {r}" for r, n in sorted(by_resource.items()) if len(n) > 1]
        if clashes:
            raise ProvisioningError(
                f"{kind} that would share a Kubernetes resource name: {'; '.join(clashes)}; "
                "rename one in the provisioning file"
            )
    return resources


def render(resources: list[dict[str, Any]], source: Path) -> str:
    """The resources as one YAML stream, under a header naming the file they came from."""
    header = (
        f"# Strimzi topics and users of the bus in {source.name}, made by\n"
        f"# `xbus provision --format strimzi --file {source.name}`: change {source.name} "
        "and make them again;\n# never edit this file.\n"
    )
    body = yaml.safe_dump_all(
        resources, explicit_start=True, sort_keys=False, allow_unicode=True, width=100
    )
    return header + body
