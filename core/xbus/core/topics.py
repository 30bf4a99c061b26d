"""The one place that names topics.

``gov.<department>.<dataset>``: raw change events, written only by the owning department.
``deliver.<subscriber>.<dataset>``: what one subscriber may see, written only by the engine.
``cdc.<department>.<dataset>``: a department's database changes as Debezium captured them,
written only by the Kafka Connect worker, read only by the bridge that republishes them as
the department's ``gov.*`` events.
``_xbus.*``: the bus's own topics (``_xbus.connect.*``: the Connect worker's own).
"""

from __future__ import annotations

import re

from xbus.core.errors import ConfigurationError

SOURCE_PREFIX = "gov."
DELIVERY_PREFIX = "deliver."
CDC_PREFIX = "cdc."

GRANTS_TOPIC = "_xbus.grants"
AUDIT_TOPIC = "_xbus.audit"
DEAD_LETTER_TOPIC = "_xbus.dead-letters"
REFERENCE_PREFIX = "_xbus.reference."
# The Kafka Connect worker's configs, offsets and status topics, and its group.
CONNECT_PREFIX = "_xbus.connect."
CONNECT_GROUP = "_xbus.connect"

# Consumer groups of the engine's readers that only read assigned partitions and commit
# nothing (Kafka's ACLs still ask for a group): the follower of grants and reference tables,
# and the reader that finds where each audit chain stopped.
POLICY_GROUP_PREFIX = "xbus-policy-"
AUDIT_READER_GROUP_PREFIX = "xbus-audit-"
# The consumer groups of the bridge that republishes ``cdc.*`` records as ``gov.*`` events.
CDC_BRIDGE_GROUP_PREFIX = "xbus-cdc-bridge"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} name {name!r} is not valid: use lower-case letters, digits and '_', "
            "starting with a letter"
        )
    return name


def source_topic(department: str, dataset: str) -> str:
    """The topic where ``department`` publishes change events of ``dataset``."""
    return f"{SOURCE_PREFIX}{_check('department', department)}.{_check('dataset', dataset)}"


def delivery_topic(subscriber: str, dataset: str) -> str:
    """The topic that carries what ``subscriber`` may see of ``dataset``."""
    return f"{DELIVERY_PREFIX}{_check('subscriber', subscriber)}.{_check('dataset', dataset)}"


def delivery_topics_pattern(subscriber: str) -> str:
    """A subscription pattern matching every ``deliver.<subscriber>.<dataset>`` topic (and
    not the subscriber's dead-letter topic)."""
    return (
        "^"
        + re.escape(f"{DELIVERY_PREFIX}{_check('subscriber', subscriber)}.")
        + "[a-z][a-z0-9_]*$"
    )


def subscriber_dead_letter_topic(subscriber: str) -> str:
    """Where a connector puts what ``subscriber``'s endpoint refused for good; under the
    subscriber's own prefix, so the subscriber can read it."""
    return f"{DELIVERY_PREFIX}{_check('subscriber', subscriber)}._dead_letters"


def cdc_topic(department: str, dataset: str) -> str:
    """The topic where Debezium writes the captured changes of ``department``'s ``dataset``
    (before the bridge republishes them to ``gov.<department>.<dataset>``)."""
    return f"{CDC_PREFIX}{_check('department', department)}.{_check('dataset', dataset)}"


def cdc_dead_letter_topic(department: str) -> str:
    """Where the bridge puts the captured changes of ``department`` it could not republish."""
    return f"{CDC_PREFIX}{_check('department', department)}._dead_letters"


def parse_source_topic(topic: str) -> tuple[str, str]:
    """``(department, dataset)`` of a source topic; raises if ``topic`` is not one."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "gov":
        raise ConfigurationError(f"{topic!r} is not a source topic (gov.<department>.<dataset>)")
    return parts[1], parts[2]


def parse_delivery_topic(topic: str) -> tuple[str, str]:
    """``(subscriber, dataset)`` of a delivery topic; raises if ``topic`` is not one."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "deliver":
        raise ConfigurationError(
            f"{topic!r} is not a delivery topic (deliver.<subscriber>.<dataset>)"
        )
    return parts[1], parts[2]


def value_subject(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"
