"""What the cluster has, what the provisioning file wants, the changes between them (the
plan), and applying them with Kafka's admin API.

Idempotent: applying a plan and planning again finds nothing to do. Only users in
provisioning's namespaces (``department.``, ``subscriber.``, ``service.``) and their ACLs
are changed or removed; topics are removed only when asked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from xbus.core.settings import BusSettings
from xbus.core.topics import DELIVERY_PREFIX, REFERENCE_PREFIX, SOURCE_PREFIX

from .access import Acl, Principal, TopicSpec, in_namespace
from .errors import ProvisioningError
from .passwords import (
    forget_password,
    keep_password,
    new_password,
    password_from_file,
    stored_password,
)

# librdkafka's own log lines (connection attempts, refusals) go here, not to stderr: what
# failed is told once, as an error (a handler the application configures still gets them).
_KAFKA_LOG = logging.getLogger("xbus.deploy.provisioning.kafka")
_KAFKA_LOG.addHandler(logging.NullHandler())
_RETRIED = {KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
MECHANISM = ScramMechanism.SCRAM_SHA_512
# Kafka's minimum for SCRAM-SHA-512 is 4096; the Java client's default is 4096 too.
ITERATIONS = 8192


@dataclass(frozen=True)
class Change:
    """One line of the plan: what kind of thing, what is done to it, which, and how."""

    kind: str
    action: str
    target: str
    detail: str = ""


@dataclass(frozen=True)
class PasswordChange:
    """A user to create, or whose password to set; the password is never shown."""

    user: str
    password: str = field(repr=False)
    create: bool
    why: str


@dataclass
class Plan:
    """The changes that bring the cluster to what the file says."""

    topics_to_create: list[TopicSpec] = field(default_factory=list)
    configs_to_alter: dict[str, dict[str, str]] = field(default_factory=dict)
    partitions_to_add: dict[str, tuple[int, int]] = field(default_factory=dict)
    passwords: list[PasswordChange] = field(default_factory=list)
    users_to_remove: list[str] = field(default_factory=list)
    acls_to_add: list[Acl] = field(default_factory=list)
    acls_to_remove: list[Acl] = field(default_factory=list)
    topics_to_remove: list[str] = field(default_factory=list)
    # What the file says but Kafka cannot do (fewer partitions); not a change.
    notes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether nothing would change."""
        return not self.changes()

    def changes(self) -> list[Change]:
        """Every change, in the order they are applied."""
        out = [
            Change("topic", "create", t.name, _topic_detail(t.partitions, t.config))
            for t in self.topics_to_create
        ]
        out += [
            Change("topic", "alter config", name, ", ".join(f"{k}={v}" for k, v in c.items()))
            for name, c in sorted(self.configs_to_alter.items())
        ]
        out += [
            Change("topic", "add partitions", name, f"{now} -> {wanted}")
            for name, (now, wanted) in sorted(self.partitions_to_add.items())
        ]
        out += [
            Change("user", "create" if p.create else "set password", p.user, p.why)
            for p in self.passwords
        ]
        out += [Change("acl", "add", a.user, _acl_detail(a)) for a in self.acls_to_add]
        out += [Change("acl", "remove", a.user, _acl_detail(a)) for a in self.acls_to_remove]
        out += [Change("user", "remove", u, "no longer in the file") for u in self.users_to_remove]
        out += [
            Change("topic", "remove", t, "no longer in the file") for t in self.topics_to_remove
        ]
        return out


def _topic_detail(partitions: int, config: dict[str, str]) -> str:
    return ", ".join([f"{partitions} partitions", *(f"{k}={v}" for k, v in sorted(config.items()))])


def _acl_detail(acl: Acl) -> str:
    star = "*" if acl.pattern == "PREFIXED" else ""
    host = "" if acl.host == "*" else f" from {acl.host}"
    allow = "" if acl.permission == "ALLOW" else f" ({acl.permission})"
    return f"{acl.operation} {acl.resource.lower()} {acl.name}{star}{host}{allow}"


@dataclass(frozen=True)
class ClusterState:
    """What provisioning looks at in the cluster."""

    topics: dict[str, int]
    configs: dict[str, dict[str, str]]
    users: frozenset[str]
    acls: frozenset[Acl]


class Provisioner:
    """Reads the cluster, plans, applies; through an admin client built from the settings
    (the office's credentials)."""

    def __init__(self, settings: BusSettings, *, timeout: float = 30.0) -> None:
        self._settings = settings
        self._login_refused = threading.Event()
        self._admin = AdminClient(settings.kafka_config(error_cb=self._on_error, logger=_KAFKA_LOG))
        self._timeout = timeout

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            self._login_refused.set()

    def _metadata(self) -> Any:
        """The cluster's metadata. A refused login is raised as such at once (librdkafka
        would otherwise retry it until the timeout and then call the broker unreachable)."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return self._admin.list_topics(timeout=1.0)
            except KafkaException as exc:
                self._admin.poll(0)  # serves the error callback
                if self._login_refused.is_set():
                    raise KafkaException(
                        KafkaError(KafkaError._AUTHENTICATION, "SASL authentication failed")
                    ) from exc
                code = exc.args[0].code() if exc.args else None
                if code not in _RETRIED or time.monotonic() > deadline:
                    raise
                if not self._settings.sasl_mechanism and code == KafkaError._TRANSPORT:
                    raise  # a broker that closes on a client without credentials
                time.sleep(0.2)

    # -- reading -------------------------------------------------------------------------------

    def state(self, wanted: Iterable[TopicSpec]) -> ClusterState:
        """The topics (with partitions), the configuration of the ``wanted`` topics that
        exist, the users in provisioning's namespaces and their ACLs."""
        metadata = self._metadata()
        topics = {name: len(t.partitions) for name, t in metadata.topics.items()}
        keys = {t.name: set(t.config) for t in wanted if t.name in topics}
        return ClusterState(topics, self._configs(keys), self._users(), self._acls())

    def _configs(self, keys: dict[str, set[str]]) -> dict[str, dict[str, str]]:
        if not keys:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(keys)]
        found: dict[str, dict[str, str]] = {}
        futures = self._admin.describe_configs(resources, request_timeout=self._timeout)
        for resource, future in futures.items():
            entries = self._result(future, f"reading the configuration of topic {resource.name}")
            found[resource.name] = {
                k: str(e.value) for k, e in entries.items() if k in keys[resource.name]
            }
        return found

    def _users(self) -> frozenset[str]:
        future = self._admin.describe_user_scram_credentials(request_timeout=self._timeout)
        assert isinstance(future, Future)  # asked for every user: one future
        described = self._result(future, "listing the SCRAM users")
        return frozenset(u for u in described if in_namespace(u))

    def _acls(self) -> frozenset[Acl]:
        every = AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name, principal and host
            ResourcePatternType.ANY,
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        bindings = self._result(
            self._admin.describe_acls(every, request_timeout=self._timeout), "listing the ACLs"
        )
        found = set()
        for b in bindings:
            user = b.principal.removeprefix("User:")
            if b.principal.startswith("User:") and in_namespace(user):
                found.add(
                    Acl(
                        user,
                        b.restype.name,
                        b.name,
                        b.resource_pattern_type.name,
                        b.operation.name,
                        b.permission_type.name,
                        b.host,
                    )
                )
        return frozenset(found)

    # -- planning ------------------------------------------------------------------------------

    def plan(
        self,
        principals: list[Principal],
        topics: list[TopicSpec],
        *,
        remove_topics: bool = False,
        rotate: Iterable[str] = (),
    ) -> Plan:
        """What applying the file would change; ``rotate`` names users to give a new password."""
        return make_plan(
            self.state(topics),
            principals,
            topics,
            self._settings.secrets_dir,
            remove_topics=remove_topics,
            rotate=set(rotate),
        )

    def ensure(self, principal: Principal) -> Plan:
        """Give ``principal`` what it lacks: its user (created if missing, or given a new
        password if its kept one is missing) and the ACLs it needs, and nothing else: no other
        user, ACL or topic is changed or removed. What the launcher does for a service it runs
        itself (the Connect worker) on a bus ``xbus provision`` may not have made yet."""
        self._metadata()  # a refused login or an unreachable broker, told as such
        state = ClusterState({}, {}, self._users(), self._acls())
        plan = Plan()
        change = _password_change(principal, state, self._settings.secrets_dir, rotate=False)
        if change is not None:
            plan.passwords.append(change)
        plan.acls_to_add = sorted(principal.acls - state.acls)
        self.apply(plan, None)
        return plan

    # -- applying ------------------------------------------------------------------------------

    def _wait_for_leaders(self, names: list[str]) -> None:
        """Return once every partition of ``names`` has a leader: a topic just created may
        answer "not leader" to the first writes for a moment, and provisioning is done only
        when the bus can be written."""
        deadline = time.monotonic() + self._timeout
        while True:
            metadata = self._admin.list_topics(timeout=self._timeout).topics
            waiting = [
                n
                for n in names
                if n not in metadata
                or metadata[n].error is not None
                or any(p.leader < 0 for p in metadata[n].partitions.values())
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ProvisioningError(
                    f"topics without a leader {self._timeout:g}s after they were made: "
                    + ", ".join(waiting)
                )
            time.sleep(0.2)

    def apply(self, plan: Plan, replication_factor: int | None) -> None:
        """Make every change of ``plan``; raises ``ProvisioningError`` naming each that failed
        (the changes before it stay made: planning again shows what is left)."""
        admin, timeout = self._admin, self._timeout
        if plan.topics_to_create:
            new = [
                NewTopic(
                    t.name,
                    num_partitions=t.partitions,
                    # -1: the cluster's default.replication.factor.
                    replication_factor=-1 if replication_factor is None else replication_factor,
                    config=t.config,
                )
                for t in plan.topics_to_create
            ]
            self._all(admin.create_topics(new, request_timeout=timeout), "creating topic {}")
            self._wait_for_leaders([t.name for t in plan.topics_to_create])
        if plan.configs_to_alter:
            resources = [
                ConfigResource(
                    ResourceType.TOPIC,
                    name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                        for k, v in config.items()
                    ],
                )
                for name, config in sorted(plan.configs_to_alter.items())
            ]
            self._all(
                admin.incremental_alter_configs(resources, request_timeout=timeout),
                "changing the configuration of {}",
                name=lambda r: r.name,
            )
        if plan.partitions_to_add:
            more = [NewPartitions(t, n) for t, (_, n) in sorted(plan.partitions_to_add.items())]
            self._all(
                admin.create_partitions(more, request_timeout=timeout),
                "adding partitions to {}",
            )
        if plan.passwords:
            upserts: list[UserScramCredentialAlteration] = [
                UserScramCredentialUpsertion(
                    p.user, ScramCredentialInfo(MECHANISM, ITERATIONS), p.password.encode()
                )
                for p in plan.passwords
            ]
            self._all(
                admin.alter_user_scram_credentials(upserts, request_timeout=timeout),
                "setting the SCRAM credential of {}",
            )
            # Kept once Kafka took them: a kept password is always the one Kafka has.
            for p in plan.passwords:
                keep_password(self._settings.secrets_dir, p.user, p.password)
        if plan.acls_to_add:
            self._all(
                admin.create_acls([_binding(a) for a in plan.acls_to_add], request_timeout=timeout),
                "adding the ACL {}",
                name=_acl_name,
            )
        if plan.acls_to_remove:
            filters = [_binding(a, filter_=True) for a in plan.acls_to_remove]
            self._all(
                admin.delete_acls(filters, request_timeout=timeout),
                "removing the ACL {}",
                name=_acl_name,
            )
        if plan.users_to_remove:
            deletions: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(u, MECHANISM) for u in plan.users_to_remove
            ]
            self._all(
                admin.alter_user_scram_credentials(deletions, request_timeout=timeout),
                "removing the user {}",
            )
            for user in plan.users_to_remove:
                forget_password(self._settings.secrets_dir, user)
        if plan.topics_to_remove:
            self._all(
                admin.delete_topics(plan.topics_to_remove, request_timeout=timeout),
                "removing topic {}",
            )

    def _result(self, future: Future[Any], what: str) -> Any:
        try:
            return future.result(self._timeout)
        except KafkaException as exc:
            raise ProvisioningError(f"{what} failed: {_kafka_error(exc)}") from exc
        except TimeoutError as exc:
            raise ProvisioningError(f"{what}: no answer within {self._timeout:.0f}s") from exc

    def _all(
        self,
        futures: dict[Any, Future[Any]],
        what: str,
        name: Any = str,
    ) -> None:
        failures = []
        for key, future in futures.items():
            try:
                self._result(future, what.format(name(key)))
            except ProvisioningError as exc:
                failures.append(str(exc))
        if failures:
            raise ProvisioningError("\n".join(failures))


def _kafka_error(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(exc)


def _acl_name(binding: Any) -> str:
    star = "*" if binding.resource_pattern_type == ResourcePatternType.PREFIXED else ""
    return (
        f"{binding.principal} {binding.operation.name} {binding.restype.name.lower()} "
        f"{binding.name}{star}"
    )


def _binding(acl: Acl, *, filter_: bool = False) -> Any:
    kind = AclBindingFilter if filter_ else AclBinding
    return kind(
        ResourceType[acl.resource],
        acl.name,
        ResourcePatternType[acl.pattern],
        f"User:{acl.user}",
        acl.host,
        AclOperation[acl.operation],
        AclPermissionType[acl.permission],
    )


def make_plan(
    state: ClusterState,
    principals: list[Principal],
    topics: list[TopicSpec],
    secrets_dir: Path,
    *,
    remove_topics: bool = False,
    rotate: set[str] | None = None,
) -> Plan:
    """The changes from ``state`` to what ``principals`` and ``topics`` say (pure but for
    reading the kept passwords and the password files the principals name)."""
    rotate = rotate or set()
    plan = Plan()
    names = {p.user for p in principals}
    unknown = rotate - names
    if unknown:
        raise ProvisioningError(
            f"cannot rotate the password of {', '.join(sorted(unknown))}: not a user the file "
            f"names (it names {', '.join(sorted(names))})"
        )
    for topic in topics:
        if topic.name not in state.topics:
            plan.topics_to_create.append(topic)
            continue
        have = state.configs.get(topic.name, {})
        changed = {k: v for k, v in topic.config.items() if have.get(k) != v}
        if changed:
            plan.configs_to_alter[topic.name] = changed
        partitions = state.topics[topic.name]
        if partitions < topic.partitions:
            plan.partitions_to_add[topic.name] = (partitions, topic.partitions)
        elif partitions > topic.partitions:
            plan.notes.append(
                Change(
                    "topic",
                    "kept",
                    topic.name,
                    f"has {partitions} partitions, the file says {topic.partitions}: "
                    "Kafka cannot take partitions away",
                )
            )
    for principal in principals:
        change = _password_change(principal, state, secrets_dir, principal.user in rotate)
        if change is not None:
            plan.passwords.append(change)
    wanted = {a for p in principals for a in p.acls}
    plan.acls_to_add = sorted(wanted - state.acls)
    plan.acls_to_remove = sorted(state.acls - wanted)
    plan.users_to_remove = sorted(state.users - names)
    if remove_topics:
        plan.topics_to_remove = _unnamed_topics(state, principals, topics)
    return plan


def _password_change(
    principal: Principal, state: ClusterState, secrets_dir: Path, rotate: bool
) -> PasswordChange | None:
    user = principal.user
    exists = user in state.users
    kept = stored_password(secrets_dir, user)
    if principal.password_file is not None:
        given = password_from_file(principal.password_file, user)
        if not exists:
            return PasswordChange(user, given, True, f"password from {principal.password_file}")
        if given != kept or rotate:
            return PasswordChange(
                user, given, False, f"password changed in {principal.password_file}"
            )
        return None
    if not exists:
        return PasswordChange(user, kept or new_password(), True, "generated password")
    if rotate:
        return PasswordChange(user, new_password(), False, "rotated: a new generated password")
    if kept is None:
        return PasswordChange(user, new_password(), False, "its kept password is missing")
    return None


def _unnamed_topics(
    state: ClusterState, principals: list[Principal], topics: list[TopicSpec]
) -> list[str]:
    """The topics in the bus's namespaces that the file no longer names: source topics and
    reference tables not listed, delivery topics of subscribers not declared. The grants,
    the audit trail and the engine's dead letters are never removed."""
    named = {t.name for t in topics}
    subscribers = {
        p.user.removeprefix("subscriber.") for p in principals if p.user.startswith("subscriber.")
    }
    found = []
    for name in sorted(state.topics):
        if name in named:
            continue
        ours = name.startswith((SOURCE_PREFIX, REFERENCE_PREFIX))
        gone_subscriber = name.startswith(DELIVERY_PREFIX) and name.split(".")[1] not in subscribers
        if ours or gone_subscriber:
            found.append(name)
    return found
