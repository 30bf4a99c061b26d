"""The change-event envelope that wraps every dataset record on the bus.

Its contract is ``resources/envelope.avsc``, shipped inside ``xbus.core``: a Debezium-like
record of ``event_id``, ``department``, ``dataset``, ``op``, ``ts_ms``, ``before``, ``after``
and ``source``, in which ``before`` and ``after`` name the placeholder ``xbus.DatasetRecord``.
Each dataset's envelope replaces it with the dataset's record; a subscriber's envelope with
its view of the record.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from xbus.core.avro_names import defined_name
from xbus.core.errors import CatalogError, SerializationError
from xbus.core.event_ids import new_event_id

if TYPE_CHECKING:
    from xbus.core.catalog import Dataset

RECORD_PLACEHOLDER = "xbus.DatasetRecord"
RECORD_FIELDS = ("before", "after")


class Op(StrEnum):
    """What happened to the record."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SNAPSHOT = "SNAPSHOT"


Record = dict[str, Any]
"""A dataset record (or a subscriber's view of one): field name to Python value."""


class Source(TypedDict):
    """Where an event was published from."""

    system: str
    origin: str
    trace_id: str | None


class ChangeEvent(TypedDict):
    """A change event as the encoder takes it and as the envelope schema decodes it.

    ``ts_ms`` is epoch milliseconds when an event is made, and a timezone-aware
    ``datetime`` once decoded (the field's logical type is ``timestamp-millis``)."""

    event_id: str
    department: str
    dataset: str
    op: str
    ts_ms: int | dt.datetime
    before: Record | None
    after: Record | None
    source: Source


@lru_cache(maxsize=8)
def load_envelope(path: Path | None = None) -> dict[str, Any]:
    """The envelope template at ``path`` (default: the one shipped with xbus), checked to
    carry the record placeholder."""
    if path is None:
        path = Path(str(files("xbus.core").joinpath("resources", "envelope.avsc")))
    try:
        template: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the envelope schema: {exc}") from exc
    for name in RECORD_FIELDS:
        field = next((f for f in template["fields"] if f["name"] == name), None)
        if field is None or field["type"] != ["null", RECORD_PLACEHOLDER]:
            raise CatalogError(
                f'{path}: field {name!r} must have type ["null", "{RECORD_PLACEHOLDER}"]'
            )
    return template


def record_of(envelope: dict[str, Any]) -> dict[str, Any]:
    """The dataset record inside a dataset's envelope schema (the ``before`` branch)."""
    before = next(f for f in envelope["fields"] if f["name"] == "before")
    record: dict[str, Any] = before["type"][1]
    return record


def record_full_name(record_schema: dict[str, Any]) -> str:
    """The full name of a record schema (its namespace and name)."""
    return defined_name(record_schema, "xbus")


def with_union_branches(event: Mapping[str, Any], record_name: str) -> dict[str, Any]:
    """The event with ``before`` and ``after`` marked as the record branch of their unions,
    so the encoder writes them without trying each branch (several times faster)."""
    before, after = event["before"], event["after"]
    return {
        **event,
        "before": None if before is None else (record_name, before),
        "after": None if after is None else (record_name, after),
    }


def envelope_schema(
    record_schema: dict[str, Any], template: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    """The envelope ``template`` with ``before`` and ``after`` of type ``record_schema``, named
    ``name`` (default: the template's) in the record's namespace."""
    record = copy.deepcopy(record_schema)
    namespace = record.get("namespace", "xbus")
    full_name = record_full_name(record)
    envelope = copy.deepcopy(template)
    envelope["name"] = f"{namespace}.{name or template['name']}"
    envelope.pop("namespace", None)
    for field in envelope["fields"]:
        if field["name"] == "before":
            field["type"] = ["null", record]  # defined here once...
        elif field["name"] == "after":
            field["type"] = ["null", full_name]  # ...and referred to by name here
    _qualify_names(envelope, template.get("namespace", "xbus"))
    return envelope


def _qualify_names(envelope: dict[str, Any], namespace: str) -> None:
    """Give the template's own named types (Op, Source) their full names, since the envelope
    now lives in the record's namespace."""
    for field in envelope["fields"]:
        kind = field["type"]
        if (
            isinstance(kind, dict)
            and kind.get("type") in ("enum", "record")
            and "." not in kind["name"]
        ):
            kind.setdefault("namespace", namespace)


def change_event(
    *,
    department: str,
    dataset: str,
    op: Op,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    system: str,
    origin: str = "sdk",
    trace_id: str | None = None,
    ts_ms: int | None = None,
    event_id: str | None = None,
) -> ChangeEvent:
    """A change event; ``event_id`` defaults to a fresh uuid and ``ts_ms`` to now."""
    return {
        "event_id": event_id or new_event_id(),
        "department": department,
        "dataset": dataset,
        "op": op.value,
        "ts_ms": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "before": before,
        "after": after,
        "source": {"system": system, "origin": origin, "trace_id": trace_id},
    }


IMAGES: dict[str, tuple[bool, bool]] = {
    Op.CREATE: (False, True),
    Op.SNAPSHOT: (False, True),
    Op.UPDATE: (True, True),
    Op.DELETE: (True, False),
}
"""Which images each op carries, as ``(before, after)``: both are required where true and
refused where false."""


@dataclass(frozen=True)
class EnvelopeProblem:
    """Why an envelope does not belong where it was found: a stable ``reason``
    (``wrong_department``, ``wrong_dataset``, ``unknown_op``, ``missing_image``,
    ``unexpected_image``, ``key_mismatch``), the ``field`` at fault and what was found."""

    reason: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


class EnvelopeRejected(SerializationError):
    """A change event whose envelope contradicts its topic, its op or its key."""

    def __init__(self, problem: EnvelopeProblem) -> None:
        super().__init__(problem.reason, str(problem))
        self.problem = problem


def image_problem(op: str, before: object, after: object) -> EnvelopeProblem | None:
    """What is wrong with the images an ``op`` carries (CREATE and SNAPSHOT ``after`` only,
    DELETE ``before`` only, UPDATE both), or None."""
    wanted = IMAGES.get(op)
    if wanted is None:
        return EnvelopeProblem("unknown_op", "op", f"{op!r} is not one of {', '.join(Op)}")
    for name, image, required in (("before", before, wanted[0]), ("after", after, wanted[1])):
        if required and image is None:
            what = "before the change" if name == "before" else "after the change"
            return EnvelopeProblem(
                "missing_image", name, f"a {op} event needs the record {what}, found null"
            )
        if not required and image is not None:
            return EnvelopeProblem(
                "unexpected_image", name, f"a {op} event has no {name} record, found one"
            )
    return None


def check_event(
    event: ChangeEvent, topic: str, key: bytes | str | None, dataset: Dataset | None
) -> EnvelopeProblem | None:
    """The first thing wrong with ``event`` as found on ``topic`` under ``key``, or None: its
    department and dataset must be the topic's (``gov.<department>.<dataset>``), its op must
    carry the images it requires, and, when ``dataset`` is known, the key must be the
    record's business key (of ``after``, or of ``before`` for a DELETE)."""
    parts = topic.split(".")
    if len(parts) == 3 and parts[0] == "gov":
        for name, expected, found in (
            ("department", parts[1], event["department"]),
            ("dataset", parts[2], event["dataset"]),
        ):
            if found != expected:
                return EnvelopeProblem(
                    f"wrong_{name}", name, f"says {found!r} on topic {topic}, not {expected!r}"
                )
    problem = image_problem(event["op"], event["before"], event["after"])
    if problem is not None or dataset is None:
        return problem
    record = event["after"] if event["after"] is not None else event["before"]
    assert record is not None  # image_problem refused an event without the image it needs
    try:
        expected_key = dataset.key_of(record)
    except KeyError as exc:
        return EnvelopeProblem("key_mismatch", "key", f"the record has no key field {exc}")
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if text != expected_key:
        # The key may be a personal value: say that it differs, never what it is.
        return EnvelopeProblem(
            "key_mismatch",
            "key",
            f"the record's key is not its business key ({', '.join(dataset.business_key)})",
        )
    return None


def require_valid_event(
    event: ChangeEvent, topic: str, key: bytes | str | None, dataset: Dataset | None
) -> None:
    """Raises ``EnvelopeRejected`` with the first problem ``check_event`` finds."""
    problem = check_event(event, topic, key, dataset)
    if problem is not None:
        raise EnvelopeRejected(problem)
