"""The dataset catalog: the change-event envelope (shipped with the package) and one Avro
schema per dataset under ``schemas/<department>/<dataset>.avsc``.

Each dataset schema says who owns it (``xbus.department``), its business key
(``xbus.business_key``), its sharing class (``xbus.sharing``) and, optionally, the
compatibility its changes must keep (``xbus.compatibility``); every field, nested ones too,
says how sensitive it is (``classification``), and identifier fields may name a format
(``xbus.format``) that publishers check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import fastavro

from xbus.core.avro_names import NamedTypes, defined_name, full_name, namespace_of
from xbus.core.envelope import envelope_schema, load_envelope
from xbus.core.errors import CatalogError
from xbus.core.identifiers import FORMATS
from xbus.core.topics import source_topic

Sharing = Literal["unconditional", "conditional", "none"]
Classification = Literal["public", "internal", "personal", "sensitive"]
SHARING_CLASSES: tuple[str, ...] = ("unconditional", "conditional", "none")
CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "personal", "sensitive")
COMPATIBILITY_MODES: tuple[str, ...] = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
# Events written before and after a change must read under either schema, against every
# earlier version: a change may add or remove only fields that have defaults.
DEFAULT_COMPATIBILITY = "FULL_TRANSITIVE"


@dataclass(frozen=True)
class Dataset:
    """One dataset of one department, with its record schema and metadata."""

    department: str
    name: str
    schema: dict[str, Any]
    envelope: dict[str, Any]
    business_key: tuple[str, ...]
    sharing: Sharing
    compatibility: str = DEFAULT_COMPATIBILITY
    classifications: dict[str, Classification] = field(default_factory=dict)
    path: Path | None = None

    @property
    def qualified_name(self) -> str:
        """``department.dataset``."""
        return f"{self.department}.{self.name}"

    @property
    def topic(self) -> str:
        """The source topic this dataset's change events go to."""
        return source_topic(self.department, self.name)

    @property
    def field_names(self) -> list[str]:
        """Names of the record's top-level fields, in schema order."""
        return [f["name"] for f in self.schema["fields"]]

    def field(self, name: str) -> dict[str, Any]:
        """The schema of the top-level field ``name``."""
        for f in self.schema["fields"]:
            if f["name"] == name:
                return cast(dict[str, Any], f)
        raise CatalogError(f"dataset {self.qualified_name} has no field {name!r}")

    def key_of(self, record: dict[str, Any]) -> str:
        """The business key of ``record`` as the string Kafka keys it by."""
        return "|".join(str(record[k]) for k in self.business_key)


def _record_types(
    kind: Any, named: NamedTypes, namespace: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """The record schemas a field type holds (through unions, arrays, maps and references to
    a named record defined earlier), each with the namespace its own names resolve in."""
    if isinstance(kind, list):
        for branch in kind:
            yield from _record_types(branch, named, namespace)
    elif isinstance(kind, str):
        found = named.lookup(kind, namespace)
        if found is not None and found.get("type") == "record":
            yield found, namespace_of(full_name(kind, namespace))
    elif isinstance(kind, dict):
        if kind.get("type") == "record":
            yield kind, namespace_of(defined_name(kind, namespace))
        elif kind.get("type") == "array":
            yield from _record_types(kind["items"], named, namespace)
        elif kind.get("type") == "map":
            yield from _record_types(kind["values"], named, namespace)
        elif isinstance(kind.get("type"), dict | list | str):
            yield from _record_types(kind["type"], named, namespace)


def field_paths(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of ``record``, nested records' fields too, as ``(dotted path, field
    schema)`` in schema order. A record type used again by name (the second party of a
    marriage) is walked again under its own field; a type that contains itself is walked
    once per path."""
    named = NamedTypes(record)
    yield from _paths(record, prefix, named, record.get("namespace", ""), ())


def _paths(
    record: dict[str, Any],
    prefix: str,
    named: NamedTypes,
    namespace: str,
    within: tuple[int, ...],
) -> Iterator[tuple[str, dict[str, Any]]]:
    within = (*within, id(record))
    inner = namespace_of(defined_name(record, namespace))
    for f in record["fields"]:
        path = f"{prefix}{f['name']}"
        yield path, f
        for nested, nested_namespace in _record_types(f["type"], named, inner):
            if id(nested) not in within:
                yield from _paths(nested, f"{path}.", named, nested_namespace, within)


def _classify(
    record: dict[str, Any], prefix: str, where: str, out: dict[str, Classification]
) -> None:
    for path, f in field_paths(record, prefix):
        c = f.get("classification")
        if c not in CLASSIFICATIONS:
            raise CatalogError(
                f"{where}: field {path!r} needs a classification, one of {CLASSIFICATIONS}"
            )
        fmt = f.get("xbus.format")
        if fmt is not None and fmt not in FORMATS:
            raise CatalogError(
                f"{where}: field {path!r} has xbus.format {fmt!r}; known: {', '.join(FORMATS)}"
            )
        out[path] = c


def load_dataset(path: Path, envelope: dict[str, Any]) -> Dataset:
    """Read and check one dataset schema file; errors name the file and what is wrong."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    return dataset_from_schema(
        schema, envelope, where=str(path), department=path.parent.name, name=path.stem, path=path
    )


def dataset_from_schema(
    schema: Any,
    envelope: dict[str, Any],
    *,
    where: str,
    department: str,
    name: str,
    path: Path | None = None,
) -> Dataset:
    """Check a dataset's record schema and metadata (as found at ``where``, expected to be
    ``department.name``); errors say what is wrong and where."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise CatalogError(f"{where}: a dataset schema must be an Avro record")
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise CatalogError(f"{where}: not a valid Avro schema: {exc}") from exc
    if schema.get("xbus.department") != department:
        raise CatalogError(
            f"{where}: xbus.department is {schema.get('xbus.department')!r}, but the dataset "
            f"belongs to {department!r}"
        )
    sharing = schema.get("xbus.sharing")
    if sharing not in SHARING_CLASSES:
        raise CatalogError(
            f"{where}: xbus.sharing must be one of {SHARING_CLASSES}, not {sharing!r}"
        )
    names = [f["name"] for f in schema["fields"]]
    key = schema.get("xbus.business_key")
    if not key or not isinstance(key, list) or any(k not in names for k in key):
        raise CatalogError(
            f"{where}: xbus.business_key must list fields of the record, not {key!r}"
        )
    compatibility = schema.get("xbus.compatibility", DEFAULT_COMPATIBILITY)
    if compatibility not in COMPATIBILITY_MODES:
        raise CatalogError(
            f"{where}: xbus.compatibility must be one of {COMPATIBILITY_MODES}, "
            f"not {compatibility!r}"
        )
    classifications: dict[str, Classification] = {}
    _classify(schema, "", where, classifications)
    return Dataset(
        department=department,
        name=name,
        schema=schema,
        envelope=envelope_schema(schema, envelope),
        business_key=tuple(key),
        sharing=sharing,
        compatibility=compatibility,
        classifications=classifications,
        path=path,
    )


class Catalog:
    """All datasets found under a schemas directory, by ``(department, dataset)``."""

    def __init__(self, datasets: list[Dataset], envelope: dict[str, Any]) -> None:
        self._datasets = {(d.department, d.name): d for d in datasets}
        self.envelope = envelope

    def with_datasets(self, more: list[Dataset]) -> Catalog:
        """This catalog and ``more``."""
        return Catalog([*self._datasets.values(), *more], self.envelope)

    @classmethod
    def load(cls, schemas_dir: Path) -> Catalog:
        """The packaged envelope and every ``<department>/<dataset>.avsc`` under
        ``schemas_dir``."""
        if not schemas_dir.is_dir():
            raise CatalogError(f"schemas directory {schemas_dir} does not exist")
        envelope = load_envelope()
        datasets = [load_dataset(p, envelope) for p in sorted(schemas_dir.glob("*/*.avsc"))]
        return cls(datasets, envelope)

    def get(self, department: str, dataset: str) -> Dataset:
        """The dataset ``department.dataset``; raises ``CatalogError`` naming what exists."""
        try:
            return self._datasets[(department, dataset)]
        except KeyError:
            raise CatalogError(
                f"no dataset {department}.{dataset} in the catalog (known: {self._known()})"
            ) from None

    def find(self, name: str) -> Dataset:
        """The dataset called ``department.dataset``, or ``dataset`` if only one has that name."""
        if "." in name:
            department, dataset = name.split(".", 1)
            return self.get(department, dataset)
        matches = [d for d in self._datasets.values() if d.name == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise CatalogError(
                f"dataset name {name!r} is ambiguous; say which: "
                + ", ".join(d.qualified_name for d in matches)
            )
        raise CatalogError(f"no dataset {name!r} in the catalog (known: {self._known()})")

    def _known(self) -> str:
        return ", ".join(f"{d}.{n}" for d, n in sorted(self._datasets)) or "none"

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self._datasets.values())

    def __len__(self) -> int:
        return len(self._datasets)
