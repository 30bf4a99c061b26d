"""What the provisioning file implies: the topics to make, and for each principal (Kafka
user) the least it needs, as ACLs. The office is Kafka's super user (``admin``): it alone
writes grants and reads the engine's dead letters (raw source records); besides it only the
engine, which continues the audit's hash chains, reads the audit trail.

| principal                | may                                                            |
|--------------------------|----------------------------------------------------------------|
| ``department.<d>``       | write and describe topics ``gov.<d>.*``; read its CDC dead     |
|                          | letters ``cdc.<d>._dead_letters`` (its own rows, refused)      |
| ``subscriber.<s>``       | read and describe ``deliver.<s>.*``; use groups ``<s>.*``      |
| ``service.engine``       | read ``gov.*``, ``_xbus.grants``, ``_xbus.reference.*``; write |
|                          | and create ``deliver.*``; write (and read) ``_xbus.audit``;    |
|                          | write ``_xbus.dead-letters``; its group, Faust's own topics    |
| ``service.connectors``   | read ``deliver.*``; write ``deliver.<s>._dead_letters``;       |
|                          | groups ``xbus-webhook-*``, ``xbus-postgres-*``, ``xbus-file-*``|
| ``service.sse``          | read ``deliver.*``; groups ``xbus-sse-*``                      |
| ``service.gateway``      | write and describe ``gov.*``                                   |
| ``service.connect``      | the Kafka Connect worker: read, write, create and describe     |
|                          | (configs too) ``_xbus.connect.*``; its group ``_xbus.connect``;|
|                          | write, describe and create ``cdc.*`` (Debezium's records)      |
| ``service.cdc_bridge``   | read and describe ``cdc.*``; groups ``xbus-cdc-bridge*``;      |
|                          | write and describe ``gov.*`` (it republishes as the owning     |
|                          | department); write each ``cdc.<d>._dead_letters``              |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from xbus.core.topics import (
    AUDIT_READER_GROUP_PREFIX,
    AUDIT_TOPIC,
    CDC_BRIDGE_GROUP_PREFIX,
    CDC_PREFIX,
    CONNECT_GROUP,
    CONNECT_PREFIX,
    DEAD_LETTER_TOPIC,
    DELIVERY_PREFIX,
    GRANTS_TOPIC,
    POLICY_GROUP_PREFIX,
    REFERENCE_PREFIX,
    SOURCE_PREFIX,
    cdc_dead_letter_topic,
    source_topic,
    subscriber_dead_letter_topic,
)

from .bus_file import BusFile, Credentials, TopicSettings

# The namespaces of the users provisioning makes; any other user (admin, controller,
# registry, a person's) is never touched.
NAMESPACES = ("department.", "subscriber.", "service.")
# The groups of connectors (``xbus-<sink>-<subscribers>``) and of the live stream.
CONNECTOR_GROUP_PREFIXES = ("xbus-webhook-", "xbus-postgres-", "xbus-file-")
SSE_GROUP_PREFIX = "xbus-sse-"

Resource = Literal["TOPIC", "GROUP"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS"]
# The Kafka Connect worker's user (``LocalStack`` makes it when the worker starts).
CONNECT_USER = "service.connect"


def in_namespace(user: str) -> bool:
    """Whether ``user`` is one provisioning makes, and so may change or remove."""
    return user.startswith(NAMESPACES)


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for one principal, from any host."""

    user: str
    resource: str  # Kafka's names: TOPIC, GROUP (what the cluster has may be any)
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE, CREATE...
    permission: str = "ALLOW"
    host: str = "*"


@dataclass(frozen=True)
class Principal:
    """A Kafka user the file names, where its password comes from, and its ACLs."""

    user: str
    password_file: Path | None
    acls: frozenset[Acl] = field(default_factory=frozenset)


@dataclass(frozen=True)
class TopicSpec:
    """A topic the file makes: partitions, and the configuration provisioning keeps."""

    name: str
    partitions: int
    config: dict[str, str]


Rule = tuple[Resource, str, Pattern, tuple[Operation, ...]]


def _rules(user: str, *rules: Rule) -> frozenset[Acl]:
    return frozenset(
        Acl(user, resource, name, pattern, op)
        for resource, name, pattern, ops in rules
        for op in ops
    )


def _password_file(entry: Credentials, base: Path) -> Path | None:
    if entry.password_file is None or entry.password_file.is_absolute():
        return entry.password_file
    return base / entry.password_file


def connect_principal(password_file: Path | None = None) -> Principal:
    """The Kafka Connect worker's user: its internal topics (it makes them, and checks that
    they are compacted, hence describe configs) and group; Debezium's ``cdc.*`` topics, which
    it writes and makes on a table's first change. Nothing of ``gov.*``: the bridge
    republishes what it captured."""
    acls = _rules(
        CONNECT_USER,
        (
            "TOPIC",
            CONNECT_PREFIX,
            "PREFIXED",
            ("READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS"),
        ),
        ("GROUP", CONNECT_GROUP, "LITERAL", ("READ",)),
        ("TOPIC", CDC_PREFIX, "PREFIXED", ("WRITE", "DESCRIBE", "CREATE")),
    )
    return Principal(CONNECT_USER, password_file, acls)


def principals(bus: BusFile, base: Path) -> list[Principal]:
    """Every user the file implies, with its ACLs; password files relative to ``base`` (the
    file's folder)."""
    found: list[Principal] = []
    for name, department in sorted(bus.departments.items()):
        user = f"department.{name}"
        own: list[Rule] = [
            ("TOPIC", f"{SOURCE_PREFIX}{name}.", "PREFIXED", ("WRITE", "DESCRIBE")),
        ]
        if bus.services.cdc_bridge is not None:
            own.append(("TOPIC", cdc_dead_letter_topic(name), "LITERAL", ("READ", "DESCRIBE")))
        acls = _rules(user, *own)
        found.append(Principal(user, _password_file(department, base), acls))
    for name, subscriber in sorted(bus.subscribers.items()):
        user = f"subscriber.{name}"
        acls = _rules(
            user,
            ("TOPIC", f"{DELIVERY_PREFIX}{name}.", "PREFIXED", ("READ", "DESCRIBE")),
            ("GROUP", f"{name}.", "PREFIXED", ("READ",)),
        )
        found.append(Principal(user, _password_file(subscriber, base), acls))
    services = bus.services
    if services.engine is not None:
        user, app_id = "service.engine", services.engine.app_id
        acls = _rules(
            user,
            ("TOPIC", SOURCE_PREFIX, "PREFIXED", ("READ", "DESCRIBE")),
            ("TOPIC", GRANTS_TOPIC, "LITERAL", ("READ", "DESCRIBE")),
            ("TOPIC", REFERENCE_PREFIX, "PREFIXED", ("READ", "DESCRIBE")),
            # It makes a subscriber's topic on its first delivery.
            ("TOPIC", DELIVERY_PREFIX, "PREFIXED", ("WRITE", "DESCRIBE", "CREATE")),
            # It continues each audit hash chain from its last record after a restart, so it
            # reads the trail it writes (the decisions, not the records they are about).
            ("TOPIC", AUDIT_TOPIC, "LITERAL", ("WRITE", "DESCRIBE", "READ")),
            ("TOPIC", DEAD_LETTER_TOPIC, "LITERAL", ("WRITE", "DESCRIBE")),
            # The hot path's consumer group is the app id (Faust itself uses no Kafka).
            ("GROUP", app_id, "LITERAL", ("READ",)),
            ("GROUP", POLICY_GROUP_PREFIX, "PREFIXED", ("READ",)),
            ("GROUP", AUDIT_READER_GROUP_PREFIX, "PREFIXED", ("READ",)),
        )
        found.append(Principal(user, _password_file(services.engine, base), acls))
    if services.connectors is not None:
        user = "service.connectors"
        rules: list[Rule] = [
            ("TOPIC", DELIVERY_PREFIX, "PREFIXED", ("READ", "DESCRIBE")),
            *(("GROUP", g, "PREFIXED", ("READ",)) for g in CONNECTOR_GROUP_PREFIXES),
            *(
                ("TOPIC", subscriber_dead_letter_topic(s), "LITERAL", ("WRITE",))
                for s in sorted(bus.subscribers)
            ),
        ]
        found.append(
            Principal(user, _password_file(services.connectors, base), _rules(user, *rules))
        )
    if services.sse is not None:
        user = "service.sse"
        acls = _rules(
            user,
            ("TOPIC", DELIVERY_PREFIX, "PREFIXED", ("READ", "DESCRIBE")),
            ("GROUP", SSE_GROUP_PREFIX, "PREFIXED", ("READ",)),
        )
        found.append(Principal(user, _password_file(services.sse, base), acls))
    if services.gateway is not None:
        user = "service.gateway"
        acls = _rules(user, ("TOPIC", SOURCE_PREFIX, "PREFIXED", ("WRITE", "DESCRIBE")))
        found.append(Principal(user, _password_file(services.gateway, base), acls))
    if services.connect is not None:
        found.append(connect_principal(_password_file(services.connect, base)))
    if services.cdc_bridge is not None:
        user = "service.cdc_bridge"
        acls = _rules(
            user,
            ("TOPIC", CDC_PREFIX, "PREFIXED", ("READ", "DESCRIBE")),
            ("GROUP", CDC_BRIDGE_GROUP_PREFIX, "PREFIXED", ("READ",)),
            ("TOPIC", SOURCE_PREFIX, "PREFIXED", ("WRITE", "DESCRIBE")),
            # Each department's CDC dead letters (provisioning makes them).
            *(
                ("TOPIC", cdc_dead_letter_topic(d), "LITERAL", ("WRITE",))
                for d in sorted(bus.departments)
            ),
        )
        found.append(Principal(user, _password_file(services.cdc_bridge, base), acls))
    return found


def _topic(name: str, settings: TopicSettings, **config: str) -> TopicSpec:
    return TopicSpec(
        name, settings.partitions, {"retention.ms": str(settings.retention_ms), **config}
    )


def topics(bus: BusFile) -> list[TopicSpec]:
    """Every topic the file makes: each dataset's source topic, the bus's own topics and each
    subscriber's dead-letter topic. Subscribers' delivery topics are the engine's to make, on
    first delivery, with the datasets its grants give."""
    compact = {"cleanup.policy": "compact"}
    own = bus.bus_topics
    found = [
        _topic(source_topic(department, dataset), settings)
        for department, entry in sorted(bus.departments.items())
        for dataset, settings in sorted(entry.datasets.items())
    ]
    found += [
        _topic(GRANTS_TOPIC, own.grants, **compact),
        _topic(AUDIT_TOPIC, own.audit),
        _topic(DEAD_LETTER_TOPIC, own.dead_letters),
        *(
            _topic(f"{REFERENCE_PREFIX}{table}", settings, **compact)
            for table, settings in sorted(own.reference_tables.items())
        ),
        *(
            _topic(subscriber_dead_letter_topic(s), own.subscriber_dead_letters)
            for s in sorted(bus.subscribers)
        ),
    ]
    if bus.services.cdc_bridge is not None:
        # What the CDC bridge could not republish of each department's captured rows.
        found += [
            _topic(cdc_dead_letter_topic(d), own.dead_letters) for d in sorted(bus.departments)
        ]
    return found
