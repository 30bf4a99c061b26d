"""CDC source files: which department database and table feed which dataset.

    # cdc/civil_affairs/marriage_registration.yaml
    department: civil_affairs
    dataset: marriage_registration
    database:
      host: 127.0.0.1
      port: 5433
      name: civil_affairs
      user: cdc_civil_affairs
      password_file: cdc_civil_affairs.password   # in the CDC secrets folder
    table: public.marriage_registrations
    publication: xbus_civil_affairs
    columns:                 # dataset field (dotted for nested records): table column
      party_a.name: party_a_name

A field the file does not map is read from the column of its own name (a nested field from
its last name part joined by underscores: ``party_a.name`` from ``party_a_name``). The
replication user's password is never in the file: it is a file in the CDC secrets folder
(``XBUS_CDC_SECRETS_DIR``), the only folder Kafka Connect may read secrets from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xbus.core.avro_names import NamedTypes, defined_name, namespace_of
from xbus.core.catalog import Catalog, Dataset
from xbus.core.errors import CatalogError, ConfigurationError
from xbus.core.secret_files import read_secret
from xbus.core.topics import cdc_topic
from xbus.core.yaml_files import FileProblem, read_yaml_targets

# PostgreSQL's identifiers as Debezium and the checks take them: unquoted, lower case.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a plain PostgreSQL name (lower case letters, digits and _, "
            "at most 63)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Database(_Strict):
    """Where the department's database is, and the user Debezium replicates as."""

    host: str
    port: int = Field(default=5432, ge=1, le=65535)
    name: str
    user: str
    password_file: str
    # libpq's and Debezium's: verify-full where the server has a certificate (rows travel
    # whole to Kafka Connect, columns no field maps included, before they are filtered).
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"

    @field_validator("password_file")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if "/" in value or value in ("", ".", ".."):
            raise ValueError(
                "must be a file name in the CDC secrets folder (XBUS_CDC_SECRETS_DIR), "
                "not a path: Kafka Connect reads secrets from that folder only"
            )
        return value

    @field_validator("name", "user")
    @classmethod
    def _plain(cls, value: str) -> str:
        return _identifier(value)

    def password(self, secrets_dir: Path) -> str:
        """The replication user's password, read now from the CDC secrets folder."""
        return read_secret(secrets_dir / self.password_file)


class CdcSource(_Strict):
    """One table of a department's database feeding one of its datasets."""

    department: str
    dataset: str
    database: Database
    table: str
    publication: str
    columns: dict[str, str] = {}
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("table")
    @classmethod
    def _qualified(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 2:
            raise ValueError("must be schema.table, e.g. public.marriage_registrations")
        for part in parts:
            _identifier(part)
        return value

    @field_validator("publication")
    @classmethod
    def _publication(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value.values():
            _identifier(column)
        return value

    @property
    def name(self) -> str:
        """``department.dataset``: how commands and metrics name the source."""
        return f"{self.department}.{self.dataset}"

    @property
    def topic(self) -> str:
        """The internal topic Debezium writes this source's changes to."""
        return cdc_topic(self.department, self.dataset)

    @property
    def connector(self) -> str:
        """The Kafka Connect connector's name."""
        return self.topic

    @property
    def slot(self) -> str:
        """The replication slot on the department's server (one per source)."""
        return f"xbus_{self.department}_{self.dataset}"[:63]

    @property
    def schema_name(self) -> str:
        """The table's schema."""
        return self.table.split(".")[0]

    @property
    def table_name(self) -> str:
        """The table's name within its schema."""
        return self.table.split(".")[1]

    def column_map(self, dataset: Dataset) -> dict[str, str]:
        """Every leaf field of the dataset (dotted path) and the column it is read from."""
        return {
            leaf.name: self.columns.get(leaf.name, leaf.name.replace(".", "_"))
            for leaf in dataset_leaves(dataset).leaves
        }


@dataclass(frozen=True)
class Leaf:
    """A field of a dataset that holds a value (not a record), wherever it is nested."""

    path: tuple[str, ...]
    type: Any  # its Avro type, named references resolved

    @property
    def name(self) -> str:
        """The dotted path, as source files write it."""
        return ".".join(self.path)


@dataclass(frozen=True)
class Leaves:
    """A dataset's value fields, and the nested records that may be null as a whole."""

    leaves: list[Leaf]
    nullable_records: list[tuple[str, ...]]


def dataset_leaves(dataset: Dataset) -> Leaves:
    """Every value field of ``dataset``, nested ones included (a record type used twice, as
    two parties of a marriage, is walked for each field)."""
    named = NamedTypes(dataset.schema)
    found = Leaves([], [])
    _walk(dataset.schema, named, dataset.schema.get("namespace", ""), (), found)
    return found


def _walk(
    record: dict[str, Any], named: NamedTypes, namespace: str, prefix: tuple[str, ...], out: Leaves
) -> None:
    inner = namespace_of(defined_name(record, namespace))
    for f in record["fields"]:
        path = (*prefix, f["name"])
        kind = f["type"]
        nullable = isinstance(kind, list) and "null" in kind
        if isinstance(kind, list):
            branches = [k for k in kind if k != "null"]
            kind = branches[0] if len(branches) == 1 else kind
        if isinstance(kind, str):
            kind = named.lookup(kind, inner) or kind
        if isinstance(kind, dict) and kind.get("type") == "record":
            if nullable:
                out.nullable_records.append(path)
            _walk(kind, named, inner, path, out)
        else:
            out.leaves.append(Leaf(path, kind))


def _check_against_catalog(
    source: CdcSource, catalog: Catalog, where: str
) -> list[tuple[tuple[str, ...], str]]:
    """What in ``source`` the catalog contradicts, as (key path, message)."""
    try:
        dataset = catalog.get(source.department, source.dataset)
    except CatalogError as exc:
        return [(("dataset",), str(exc))]
    leaves = source.column_map(dataset)
    problems: list[tuple[tuple[str, ...], str]] = [
        (("columns", field), f"{dataset.qualified_name} has no field {field!r} to map")
        for field in source.columns
        if field not in leaves
    ]
    by_column: dict[str, str] = {}
    for field, column in leaves.items():
        if column in by_column:
            problems.append(
                (
                    ("columns",),
                    f"column {column} would feed both {by_column[column]} and {field}",
                )
            )
        by_column[column] = field
    return problems


def load_sources(
    targets: Iterable[Path], catalog: Catalog
) -> tuple[list[CdcSource], list[FileProblem]]:
    """Every CDC source under ``targets`` and every problem, with file and line: a field or
    dataset the catalog lacks, a dataset fed by two sources."""
    found: list[CdcSource] = []
    problems: list[FileProblem] = []
    seen: dict[str, Path] = {}
    slots: dict[str, str] = {}
    for file in read_yaml_targets(targets):
        if isinstance(file, FileProblem):
            problems.append(file)
            continue
        try:
            source = CdcSource.model_validate(file.content).model_copy(update={"path": file.path})
        except ValidationError as exc:
            for error in exc.errors():
                location = tuple(str(p) for p in error["loc"])
                problems.append(
                    FileProblem(
                        str(file.path),
                        file.line_of(location),
                        f"{'.'.join(location)}: {error['msg']}",
                    )
                )
            continue
        found_problems = _check_against_catalog(source, catalog, str(file.path))
        for location, message in found_problems:
            problems.append(FileProblem(str(file.path), file.line_of(location), message))
        if found_problems:
            continue
        if source.slot in slots:
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(("dataset",)),
                    f"its replication slot {source.slot} is also {slots[source.slot]}'s; "
                    "rename one of the datasets",
                )
            )
            continue
        slots[source.slot] = source.name
        if source.name in seen:
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(("dataset",)),
                    f"{source.name} is already fed by {seen[source.name]}; one source per dataset",
                )
            )
            continue
        seen[source.name] = file.path
        found.append(source)
    return found, problems


def require_sources(targets: Iterable[Path], catalog: Catalog) -> list[CdcSource]:
    """The CDC sources under ``targets``; raises ``ConfigurationError`` listing every
    problem, or saying that there is none."""
    targets = list(targets)
    sources, problems = load_sources(targets, catalog)
    if problems:
        raise ConfigurationError(
            "the CDC source files have problems:\n" + "\n".join(f"  {p}" for p in problems)
        )
    if not sources:
        raise ConfigurationError(
            f"no CDC source in {', '.join(map(str, targets))}: declare one per dataset "
            "(docs/cdc.md)"
        )
    return sources
