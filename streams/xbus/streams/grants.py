"""Grants: who may see which rows and fields of which dataset, for what purpose, until when,
and how each field is transformed on the way out.

A grant is a small YAML file (see docs/grants.md):

    grant: tax-bureau-business-licence
    subscriber: tax_bureau
    dataset: market_regulation.business_licence
    purpose: Open a tax account for each newly registered enterprise
    legal_basis: 税收征收管理法 第十五条
    approval: SJ-2026-0042
    valid_from: 2026-01-01T00:00:00+08:00
    valid_until: 2027-01-01T00:00:00+08:00
    operations: [CREATE, UPDATE, SNAPSHOT]
    rows: after.status == 'ACTIVE'
    fields:
      credit_code: {}
      legal_representative_id: {mask: {type: show_last, n: 4}}
      address: {mask: {type: district}, rename: registered_district}
    derive:
      capital_band: {cel: "record.registered_capital >= 1000000.0 ? 'large' : 'small'"}
    lookup:
      district_name: {table: districts, key: district_code}

``load_grant_file`` reads one and keeps the line of every key, so that ``validate_grant``
(and pydantic's own checks) can say which line is wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from xbus.core.envelope import Op
from xbus.core.yaml_files import FileProblem, YamlFile
from xbus.streams.masks import MASK_TYPES, Mask

GRANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
SUBSCRIBER = re.compile(r"^[a-z][a-z0-9_]*$")
AVRO_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# An approval is a reference someone can look up: blank text names none.
Approval = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Strict):
    """How one granted field leaves: as it is, masked, renamed; ``approved_unmasked`` names
    the approval under which a personal or sensitive field may leave unmasked."""

    mask: Mask | None = None
    rename: str | None = Field(None, pattern=AVRO_NAME)
    approved_unmasked: Approval | None = None


class Derived(_Strict):
    """A field computed with a CEL expression over ``record`` (the record being sent, before
    or after), ``op`` and ``now``. It is as sensitive as the most sensitive field it reads: a
    personal or sensitive one leaves masked, or unmasked under ``approved_unmasked``."""

    cel: str
    type: Literal["string", "int", "long", "double", "boolean"] = "string"
    nullable: bool = True
    mask: Mask | None = None
    approved_unmasked: Approval | None = None


class Lookup(_Strict):
    """A field looked up in a reference table by the value of one of the record's fields. The
    value found tells as much as its key: a personal or sensitive key needs
    ``approved_unmasked``."""

    table: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    key: str
    approved_unmasked: Approval | None = None


class Grant(_Strict):
    """One subscriber's access to one dataset."""

    grant: str = Field(description="The grant's id: lower-case letters, digits and '-'.")
    subscriber: str
    dataset: str = Field(description="department.dataset")
    purpose: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    approval: Approval | None = None
    valid_from: dt.datetime
    valid_until: dt.datetime | None = None
    operations: tuple[Op, ...] = Field((Op.CREATE, Op.UPDATE, Op.DELETE, Op.SNAPSHOT), min_length=1)
    rows: str | None = None
    fields: dict[str, FieldRule] = Field(min_length=1)
    derive: dict[str, Derived] = {}
    lookup: dict[str, Lookup] = {}

    @field_validator("grant")
    @classmethod
    def _grant_id(cls, value: str) -> str:
        if not GRANT_ID.match(value):
            raise ValueError("a grant id is 3 to 63 lower-case letters, digits and '-'")
        return value

    @field_validator("subscriber")
    @classmethod
    def _subscriber(cls, value: str) -> str:
        if not SUBSCRIBER.match(value):
            raise ValueError("a subscriber is lower-case letters, digits and '_'")
        return value

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a UTC offset, e.g. 2026-01-01T00:00:00+08:00")
        return value

    @property
    def department(self) -> str:
        return self.dataset.split(".", 1)[0]

    @property
    def dataset_name(self) -> str:
        return self.dataset.split(".", 1)[-1]

    def in_force(self, now: dt.datetime) -> bool:
        """Whether ``now`` lies in the grant's validity window."""
        return self.valid_from <= now and (self.valid_until is None or now < self.valid_until)


def parse_grant(file: YamlFile) -> Grant | list[FileProblem]:
    """The grant in ``file``, or every problem pydantic finds, each with its line."""
    if not isinstance(file.content, dict):
        return [FileProblem(str(file.path), 1, "a grant file holds one mapping of keys")]
    try:
        return Grant.model_validate(file.content)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = tuple(p for p in error["loc"] if p not in MASK_TYPES)
            where = ".".join(str(p) for p in location)
            message = (
                error["msg"]
                .removeprefix("Value error, ")
                .replace("Input should be", "should be")
                .replace("String should", "should")
            )
            if error["type"] == "missing":
                message = "missing: every grant gives it"
            elif error["type"] == "extra_forbidden":
                message = "unknown key here (see docs/grants.md for the keys a grant has)"
            elif error["type"] in ("model_type", "dict_type"):
                message = "give a mapping of keys here, e.g. {} or {mask: {type: redact}}"
            elif error["type"] == "string_too_short" and location[-1:] in (
                ("approval",),
                ("approved_unmasked",),
            ):
                message = "name the approval: blank text names none"
            elif error["type"] == "too_short" and location == ("operations",):
                message = "name at least one of CREATE, UPDATE, DELETE, SNAPSHOT"
            elif error["type"] == "union_tag_invalid":
                message = (
                    f"unknown mask type {error['input'].get('type')!r}; known: "
                    f"{', '.join(MASK_TYPES)}"
                )
            elif error["type"] == "union_tag_not_found":
                message = f"a mask needs a type, one of {', '.join(MASK_TYPES)}"
            problems.append(
                FileProblem(
                    str(file.path),
                    file.line_of(location),
                    f"{where}: {message}" if where else message,
                )
            )
        return problems
