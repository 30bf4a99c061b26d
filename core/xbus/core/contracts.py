"""Keeping the catalog and the registry in step: checking that a changed dataset schema keeps
its compatibility mode (against what is registered, or a git revision), and registering the
catalog's schemas, which is a no-op for those already registered."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from xbus.core.catalog import DEFAULT_COMPATIBILITY, Catalog, Dataset
from xbus.core.compatibility import Incompatibility, mode_problems
from xbus.core.envelope import record_of
from xbus.core.errors import CatalogError, RegistryUnavailable, XbusError
from xbus.core.serde import registered_schema_id, registry_rest_of
from xbus.core.topics import value_subject


@dataclass(frozen=True)
class ContractProblem:
    """A dataset change that breaks the dataset's compatibility mode."""

    dataset: Dataset
    against: str
    direction: str
    incompatibility: Incompatibility

    def __str__(self) -> str:
        i = self.incompatibility
        return (
            f"{self.dataset.qualified_name}: field {i.path or '(record)'}: {i.message} "
            f"[rule {i.rule}, mode {self.dataset.compatibility}: {self.direction}; "
            f"against {self.against}]"
        )


@dataclass(frozen=True)
class Registration:
    """What ``register`` did for one dataset."""

    dataset: Dataset
    subject: str
    schema_id: int
    changed: bool


def registered_records(
    registry: SchemaRegistryClient, subject: str
) -> list[tuple[int, dict[str, Any]]]:
    """Every registered version of ``subject`` as ``(version, dataset record schema)``,
    oldest first; empty if the subject does not exist."""
    try:
        versions = registry.get_versions(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return []
        raise
    found = []
    for version in sorted(versions):
        registered = registry.get_version(subject, version)
        found.append((version, record_of(json.loads(registered.schema.schema_str or "{}"))))
    return found


def _problems(dataset: Dataset, old: dict[str, Any], against: str) -> list[ContractProblem]:
    return [
        ContractProblem(dataset, against, direction, i)
        for direction, i in mode_problems(dataset.compatibility, dataset.schema, old)
    ]


def check_against_registry(
    catalog: Catalog, registry: SchemaRegistryClient
) -> list[ContractProblem]:
    """What of the catalog breaks its mode against the registered versions (the latest one,
    or every one for a ``_TRANSITIVE`` mode)."""
    problems: list[ContractProblem] = []
    for dataset in catalog:
        if dataset.compatibility == "NONE":
            continue
        versions = registered_records(registry, value_subject(dataset.topic))
        if not dataset.compatibility.endswith("_TRANSITIVE"):
            versions = versions[-1:]
        for version, old in versions:
            problems += _problems(dataset, old, f"registered version {version}")
    return problems


def check_against_git(catalog: Catalog, revision: str) -> list[ContractProblem]:
    """What of the catalog breaks its mode against the same files at git ``revision`` (of
    the repository the schemas are in); a dataset new since then has nothing to break."""
    problems: list[ContractProblem] = []
    for dataset in catalog:
        if dataset.compatibility == "NONE" or dataset.path is None:
            continue
        relative = dataset.path
        shown = subprocess.run(
            ["git", "show", f"{revision}:./{dataset.path.name}"],
            cwd=dataset.path.parent,
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            if "exists on disk, but not in" in shown.stderr or "does not exist" in shown.stderr:
                continue
            raise XbusError(f"git could not show {relative} at {revision}: {shown.stderr.strip()}")
        try:
            old = json.loads(shown.stdout)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{relative} at {revision} is not valid JSON: {exc}") from exc
        problems += _problems(dataset, old, f"git {revision}")
    return problems


def register_catalog(catalog: Catalog, registry: SchemaRegistryClient) -> list[Registration]:
    """Register each dataset's envelope under its topic's value subject and set the subject's
    compatibility to the dataset's mode, and the registry's global default to the catalog's
    (``DEFAULT_COMPATIBILITY``); a schema already registered is left as it is.

    Raises ``XbusError`` naming the dataset and every broken rule if a schema would break its
    mode, before registering anything."""
    problems = check_against_registry(catalog, registry)
    if problems:
        raise XbusError("not registering: " + "; ".join(str(p) for p in problems))
    set_default_compatibility(registry)
    done = []
    for dataset in catalog:
        subject = value_subject(dataset.topic)
        schema_id = registered_schema_id(registry, subject, dataset.envelope)
        changed = schema_id is None
        if schema_id is None:
            schema_id = registry.register_schema(
                subject, Schema(json.dumps(dataset.envelope), "AVRO")
            )
        if subject_compatibility(registry, subject) != dataset.compatibility:
            set_subject_compatibility(registry, subject, dataset.compatibility)
            changed = True
        done.append(Registration(dataset, subject, int(schema_id), changed))
    return done


_APICURIO_CCOMPAT = "/apis/ccompat/"


def set_subject_compatibility(registry: SchemaRegistryClient, subject: str, level: str) -> None:
    """Set ``subject``'s compatibility to ``level``.

    Apicurio's Confluent API stores a subject's ``NONE`` as "no rule of its own", so the global
    default (which xbus sets to ``FULL_TRANSITIVE``) would still apply; there, ``NONE`` is also
    set as the artifact's own rule through Apicurio's API (its ccompat path gives it away).
    Other Confluent-API registries honour the subject's ``NONE`` as it is."""
    registry.set_compatibility(subject_name=subject, level=level)
    registry_url, session = registry_rest_of(registry)
    if level != "NONE" or _APICURIO_CCOMPAT not in registry_url:
        return
    rules = (
        f"{registry_url.split(_APICURIO_CCOMPAT)[0]}/apis/registry/v3/groups/default/"
        f"artifacts/{subject}/rules"
    )
    rule = {"ruleType": "COMPATIBILITY", "config": "NONE"}
    try:
        answer = session.post(rules, json=rule, timeout=30)
        if answer.status_code == 409:  # the artifact has a rule already: make it NONE
            answer = session.put(f"{rules}/COMPATIBILITY", json=rule, timeout=30)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(f"setting {subject}'s compatibility to NONE: {exc}") from exc


def set_default_compatibility(registry: SchemaRegistryClient) -> bool:
    """Set the registry's global compatibility to the catalog's default
    (``DEFAULT_COMPATIBILITY``), so that a subject made outside ``xbus schemas register`` is
    guarded too; returns whether it changed."""
    if subject_compatibility(registry, None) == DEFAULT_COMPATIBILITY:
        return False
    registry.set_compatibility(level=DEFAULT_COMPATIBILITY)
    return True


def subject_compatibility(registry: SchemaRegistryClient, subject: str | None) -> str | None:
    """``subject``'s compatibility (None: the registry's global one), or None if the registry
    does not know the subject."""
    try:
        return str(registry.get_compatibility(subject_name=subject))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise
