"""The dataset catalog: one Avro schema per dataset under ``schemas/<department>/``.

Each dataset schema says who owns it (``xbus.department``), its business key
(``xbus.business_key``) and its sharing class (``xbus.sharing``); each field says how
sensitive it is (``classification``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import fastavro

from xbus.errors import CatalogError
from xbus.topics import source_topic

Sharing = Literal["unconditional", "conditional", "none"]
Classification = Literal["public", "internal", "personal", "sensitive"]
SHARING_CLASSES: tuple[str, ...] = ("unconditional", "conditional", "none")
CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "personal", "sensitive")


@dataclass(frozen=True)
class Dataset:
    """One dataset of one department, with its record schema and metadata."""

    department: str
    name: str
    schema: dict[str, Any]
    business_key: tuple[str, ...]
    sharing: Sharing
    classifications: dict[str, Classification] = field(default_factory=dict)
    path: Path | None = None

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
        raise CatalogError(f"dataset {self.department}.{self.name} has no field {name!r}")

    def key_of(self, record: dict[str, Any]) -> str:
        """The business key of ``record`` as the string Kafka keys it by."""
        return "|".join(str(record[k]) for k in self.business_key)


def load_dataset(path: Path) -> Dataset:
    """Read and check one dataset schema file; errors name the file and what is missing."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise CatalogError(f"{path}: not a valid Avro schema: {exc}") from exc
    where = f"{path}"
    department = schema.get("xbus.department")
    if department != path.parent.name:
        raise CatalogError(
            f"{where}: xbus.department is {department!r} but the file lies in the folder of "
            f"{path.parent.name!r}"
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
    classifications: dict[str, Classification] = {}
    for f in schema["fields"]:
        c = f.get("classification")
        if c not in CLASSIFICATIONS:
            raise CatalogError(
                f"{where}: field {f['name']!r} needs a classification, one of {CLASSIFICATIONS}"
            )
        classifications[f["name"]] = c
    return Dataset(
        department=department,
        name=path.stem,
        schema=schema,
        business_key=tuple(key),
        sharing=sharing,
        classifications=classifications,
        path=path,
    )


class Catalog:
    """All datasets found under a schemas directory, by ``(department, dataset)``."""

    def __init__(self, datasets: list[Dataset]) -> None:
        self._datasets = {(d.department, d.name): d for d in datasets}

    @classmethod
    def load(cls, schemas_dir: Path) -> Catalog:
        """Load every ``<department>/<dataset>.avsc`` under ``schemas_dir``."""
        if not schemas_dir.is_dir():
            raise CatalogError(f"schemas directory {schemas_dir} does not exist")
        return cls([load_dataset(p) for p in sorted(schemas_dir.glob("*/*.avsc"))])

    def get(self, department: str, dataset: str) -> Dataset:
        """The dataset ``department.dataset``; raises ``CatalogError`` naming what exists."""
        try:
            return self._datasets[(department, dataset)]
        except KeyError:
            known = ", ".join(f"{d}.{n}" for d, n in sorted(self._datasets)) or "none"
            raise CatalogError(
                f"no dataset {department}.{dataset} in the catalog (known: {known})"
            ) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._datasets.values())

    def __len__(self) -> int:
        return len(self._datasets)
