"""The catalogue (数据目录) as the console shows it: departments, their datasets, each
dataset's fields with type, classification and documentation, and its schema versions in
the registry with what each version added.

When a registered version adds a personal or sensitive field, the dataset's page names the
grants that version touches: none of them delivers the new field (a field no grant names never
leaves), and each would need a new version to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from xbus.core.catalog import Catalog, Dataset, field_paths
from xbus.core.contracts import registered_records
from xbus.core.topics import value_subject

PROTECTED = ("personal", "sensitive")


@dataclass(frozen=True)
class FieldEntry:
    """One field of a dataset as the catalogue lists it."""

    path: str
    type: str
    classification: str
    doc: str
    optional: bool

    @property
    def depth(self) -> int:
        return self.path.count(".")


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a dataset's schema and the fields it added."""

    version: int
    added: tuple[FieldEntry, ...]

    @property
    def added_protected(self) -> tuple[FieldEntry, ...]:
        return tuple(f for f in self.added if f.classification in PROTECTED)


def type_label(kind: Any) -> str:
    """An Avro type as a person reads it: ``string``, ``date``, ``enum``, ``record Party``,
    ``string?`` for an optional one."""
    if isinstance(kind, list):
        branches = [b for b in kind if b != "null"]
        label = " | ".join(type_label(b) for b in branches)
        return f"{label}?" if len(branches) < len(kind) else label
    if isinstance(kind, dict):
        if "logicalType" in kind:
            return str(kind["logicalType"])
        if kind.get("type") in ("record", "enum", "fixed"):
            return f"{kind['type']} {kind.get('name', '')}".strip()
        if kind.get("type") == "array":
            return f"array of {type_label(kind['items'])}"
        if kind.get("type") == "map":
            return f"map of {type_label(kind['values'])}"
        return type_label(kind.get("type"))
    return str(kind)


def fields_of(record: dict[str, Any]) -> list[FieldEntry]:
    """Every field of a dataset record schema, nested ones after their parent."""
    return [
        FieldEntry(
            path=path,
            type=type_label(f["type"]),
            classification=str(f.get("classification", "")),
            doc=str(f.get("doc", "")),
            optional=isinstance(f["type"], list) and "null" in f["type"],
        )
        for path, f in field_paths(record)
    ]


def search(catalog: Catalog, query: str) -> list[Dataset]:
    """The datasets whose name, department, documentation or a field's name or documentation
    holds every word of ``query`` (case-insensitive); all of them for an empty query."""
    words = query.lower().split()
    found = []
    for dataset in catalog:
        text = " ".join(
            [
                dataset.qualified_name,
                str(dataset.schema.get("doc", "")),
                *(f"{f.path} {f.doc}" for f in fields_of(dataset.schema)),
            ]
        ).lower()
        if all(w in text for w in words):
            found.append(dataset)
    return sorted(found, key=lambda d: d.qualified_name)


def legal_basis(dataset: Dataset) -> str:
    """Why a dataset is or is not shared, as its schema says (``xbus.legal_basis``)."""
    return str(dataset.schema.get("xbus.legal_basis", ""))


def schema_versions(registry: SchemaRegistryClient, dataset: Dataset) -> list[SchemaVersion]:
    """The registered versions of ``dataset``'s schema, oldest first, each with the fields
    it added to the one before."""
    versions = []
    known: set[str] = set()
    for version, record in registered_records(registry, value_subject(dataset.topic)):
        entries = fields_of(record)
        added = tuple(f for f in entries if f.path not in known) if known else ()
        known |= {f.path for f in entries}
        versions.append(SchemaVersion(version, added))
    return versions


def compatibility(registry: SchemaRegistryClient, dataset: Dataset) -> str:
    """The compatibility mode the registry holds the dataset's subject to (its own, else the
    registry's)."""
    subject = value_subject(dataset.topic)
    try:
        return str(registry.get_compatibility(subject))
    except SchemaRegistryError:
        try:
            return str(registry.get_compatibility())
        except SchemaRegistryError:
            return dataset.compatibility
