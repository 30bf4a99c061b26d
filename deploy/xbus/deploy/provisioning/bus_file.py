"""The provisioning file: who the bus's departments, subscribers and services are, and the
settings of the topics it makes. Read strictly (an unknown key is an error) and checked
against the dataset catalog and the grants, each mistake reported as ``file:line: what``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from xbus.core.catalog import Catalog
from xbus.core.yaml_files import FileProblem, YamlFile, read_yaml_file, read_yaml_targets

from .errors import BusFileError

FILE_ENV = "XBUS_PROVISIONING_FILE"
DEFAULT_FILE = Path("bus.yaml")

NAME = r"^[a-z][a-z0-9_]*$"
_NAME = re.compile(NAME)
# One week, Kafka's own default, said out loud so that the plan shows it.
WEEK_MS = 7 * 24 * 3600 * 1000
SERVICES = ("engine", "connectors", "sse", "gateway", "connect", "cdc_bridge")

Partitions = Annotated[StrictInt, Field(ge=1, le=1000)]
# Milliseconds, or -1: kept for ever.
Retention = Annotated[StrictInt, Field(ge=-1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Strict):
    """How one topic is made: partitions and how long records stay."""

    partitions: Partitions = 3
    retention_ms: Retention = WEEK_MS


class SourceTopicSettings(TopicSettings):
    """A dataset's ``gov.*`` topic: 12 partitions unless said otherwise, so that several
    engine workers can share one dataset (a topic's partitions are its unit of sharing)."""

    partitions: Partitions = 12


class Credentials(_Strict):
    """Where a user's password comes from: generated (default) or a file the office keeps."""

    password_file: Path | None = None


class Department(Credentials):
    """A department and the datasets it owns (each named in the catalog), with the settings
    of each dataset's ``gov.<department>.<dataset>`` topic."""

    datasets: dict[str, SourceTopicSettings] = Field(min_length=1)


class Subscriber(Credentials):
    """A subscriber: it reads ``deliver.<subscriber>.*`` and its groups are ``<subscriber>.*``."""


class Engine(Credentials):
    """The policy engine; ``app_id`` is its Faust app id and its consumer group."""

    app_id: str = Field("xbus-engine", pattern=r"^[a-z][a-z0-9_-]*$")


class Service(Credentials):
    """A service of the bus that has a Kafka user of its own."""


class Services(_Strict):
    """The bus's services; one left out gets no user."""

    engine: Engine | None = None
    connectors: Service | None = None
    sse: Service | None = None
    gateway: Service | None = None
    # The Kafka Connect worker (Debezium's change data capture) and the bridge that
    # republishes what it captured as the departments' events.
    connect: Service | None = None
    cdc_bridge: Service | None = None


class BusTopics(_Strict):
    """The bus's own topics: grants and reference tables compacted (only the newest value of
    each key counts), the audit trail kept long, the engine's dead letters."""

    grants: TopicSettings = TopicSettings(partitions=1, retention_ms=-1)
    audit: TopicSettings = TopicSettings(partitions=3, retention_ms=-1)
    dead_letters: TopicSettings = TopicSettings(partitions=1, retention_ms=30 * 24 * 3600 * 1000)
    reference_tables: dict[str, TopicSettings] = {}
    # A subscriber's dead-letter topic (deliver.<subscriber>._dead_letters).
    subscriber_dead_letters: TopicSettings = TopicSettings(
        partitions=1, retention_ms=30 * 24 * 3600 * 1000
    )


class BusFile(_Strict):
    """The whole file."""

    version: Literal[1] = 1
    # None: the cluster's own default.replication.factor (the local stack's: 1 on one broker,
    # 3 on three).
    replication_factor: Annotated[StrictInt, Field(ge=1, le=10)] | None = None
    departments: dict[str, Department] = {}
    subscribers: dict[str, Subscriber] = {}
    services: Services = Services()
    bus_topics: BusTopics = BusTopics()


def provisioning_file(given: Path | None = None) -> Path:
    """The file to read: ``given``, else ``$XBUS_PROVISIONING_FILE``, else ``bus.yaml``."""
    if given is not None:
        return given
    return Path(os.environ.get(FILE_ENV) or DEFAULT_FILE)


def load_bus_file(path: Path, catalog: Catalog, grants_dir: Path | None) -> BusFile:
    """The file at ``path``, checked: against its model, the catalog (every dataset named
    exists; every dataset's department is declared and lists it) and the grants under
    ``grants_dir`` (every subscriber they name is declared). ``BusFileError`` lists every
    mistake found, each with its line."""
    read = read_yaml_file(path)
    if isinstance(read, FileProblem):
        raise BusFileError([read])
    model = _parse(read)
    problems = _names(read, model) + _against_catalog(read, model, catalog)
    if grants_dir is not None:
        problems += _against_grants(read, model, grants_dir)
    if problems:
        raise BusFileError(problems)
    return model


def _parse(file: YamlFile) -> BusFile:
    if not isinstance(file.content, dict):
        raise BusFileError([FileProblem(str(file.path), 1, "the file holds one mapping of keys")])
    try:
        return BusFile.model_validate(file.content)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = tuple(error["loc"])
            where = ".".join(str(p) for p in location)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key here (docs/provisioning.md lists the keys)"
            problems.append(
                FileProblem(str(file.path), file.line_of(location), f"{where}: {message}")
            )
        raise BusFileError(problems) from None


def _names(file: YamlFile, model: BusFile) -> list[FileProblem]:
    problems = []
    named: list[tuple[str, ...]] = [("departments", d) for d in model.departments]
    named += [
        ("departments", d, "datasets", n) for d, v in model.departments.items() for n in v.datasets
    ]
    named += [("subscribers", s) for s in model.subscribers]
    named += [("bus_topics", "reference_tables", t) for t in model.bus_topics.reference_tables]
    for location in named:
        if not _NAME.match(str(location[-1])):
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(location),
                    f"{location[-1]!r} is not a valid name: use lower-case letters, digits "
                    "and '_', starting with a letter",
                )
            )
    return problems


def _against_catalog(file: YamlFile, model: BusFile, catalog: Catalog) -> list[FileProblem]:
    problems = []
    owned = {(d.department, d.name): d for d in catalog}
    for department, declared in model.departments.items():
        for dataset in declared.datasets:
            if (department, dataset) not in owned:
                known = sorted(n for d, n in owned if d == department)
                problems.append(
                    FileProblem(
                        str(file.path),
                        file.line_of(("departments", department, "datasets", dataset)),
                        f"the catalog has no dataset {department}.{dataset} "
                        f"(its datasets of {department}: {', '.join(known) or 'none'})",
                    )
                )
    for (department, dataset), found in sorted(owned.items()):
        entry = model.departments.get(department)
        where = f" ({found.path})" if found.path else ""
        if entry is None:
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(("departments",)),
                    f"department {department} owns {department}.{dataset} in the catalog"
                    f"{where} but is not declared under departments",
                )
            )
        elif dataset not in entry.datasets:
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(("departments", department, "datasets")),
                    f"dataset {department}.{dataset} is in the catalog{where} but not under "
                    f"departments.{department}.datasets",
                )
            )
    return problems


def _against_grants(file: YamlFile, model: BusFile, grants_dir: Path) -> list[FileProblem]:
    """Every subscriber a grant names must be declared. The grants are read here as YAML, for
    their ``subscriber`` key only: checking them whole is ``xbus grants check``."""
    if not grants_dir.exists():
        return []
    problems = []
    for grant in read_yaml_targets([grants_dir]):
        if isinstance(grant, FileProblem) or not isinstance(grant.content, dict):
            continue
        subscriber = grant.content.get("subscriber")
        if isinstance(subscriber, str) and subscriber not in model.subscribers:
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(("subscribers",)),
                    f"subscriber {subscriber} is named by the grant "
                    f"{grant.path}:{grant.line_of(('subscriber',))} but not declared "
                    "under subscribers",
                )
            )
    return problems
