"""What a grant adds to its view beyond the dataset's fields: derived fields and looked-up
fields, checked against the dataset before the grant is accepted, and made ready to compute.

A derived field's expression is typed against the dataset's schema and classified as the most
sensitive field it reads; a looked-up field is classified as its key. Either, when personal or
sensitive, leaves only masked or under an approval, exactly like a field.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xbus.core.catalog import Dataset
from xbus.streams.exceptions import GrantFailed
from xbus.streams.expression_check import (
    PROTECTED,
    check_expression,
    highest,
    read_fields,
    record_variables,
)
from xbus.streams.expressions import (
    DERIVED_TYPES,
    cel_failure,
    cel_type,
    compile_cel,
    failure_text,
)
from xbus.streams.grants import AVRO_NAME, Grant
from xbus.streams.masks import District, Mask, Round, ShowFirst, ShowLast

AVRO_NAME_PATTERN = re.compile(AVRO_NAME)
# Where in a grant file, and what is wrong there.
Problems = list[tuple[tuple[str, ...], str]]

# A derived field's declared type: its Avro type, the CEL types that fit it, its mask kind.
_DERIVED_AVRO = {
    "string": "string",
    "int": "int",
    "long": "long",
    "double": "double",
    "boolean": "boolean",
}
_FITS = {
    "string": ("string",),
    "int": ("int", "uint"),
    "long": ("int", "uint"),
    "double": ("double", "int", "uint"),
    "boolean": ("bool",),
}
_DERIVED_KIND = {"string": "string", "int": "int", "long": "long", "double": "double"}
_MIN_FLOAT_STEP = decimal.Decimal("0.000001")


def mask_problem(mask: Mask, kind: str, ftype: Any, name: str) -> str | None:
    """What makes a mask that fits a field's type still wrong for it, if anything."""
    if isinstance(mask, Round):
        step = mask.step
        if kind in ("int", "long") and step != step.to_integral_value():
            return f"round on an integer field takes a whole step, not {step}"
        if kind == "decimal":
            scale = ftype.get("scale", 0) if isinstance(ftype, dict) else 0
            if step < decimal.Decimal(1).scaleb(-scale):
                return f"round step {step} is finer than the field's {scale} decimal places"
        if kind in ("float", "double") and step < _MIN_FLOAT_STEP:
            return f"round step {step} is finer than {_MIN_FLOAT_STEP}, the finest it takes"
    if isinstance(mask, District) and not any(w in name for w in ("address", "district")):
        return (
            "mask district applies to an address or a division code (a field whose name "
            f"says address or district), not to {name}"
        )
    return None


@dataclass(frozen=True)
class DerivedField:
    """A derived field made ready to compute."""

    name: str
    program: Any
    source: str
    declared: str
    nullable: bool
    mask: Callable[[Any], Any] | None = None
    mask_type: str = ""
    # The record's top-level fields the expression reads (as the expression check found).
    reads: frozenset[str] = frozenset()

    def value(self, context: Any) -> Any:
        """The field's value in ``context``: null where the expression fails or gives another
        type than declared and the field is nullable; else raises ``GrantFailed``."""
        try:
            result = self.program.execute(context)
        except Exception as exc:  # CEL raises builtin errors of many kinds
            if self.nullable:
                return None
            raise GrantFailed(
                f"derive.{self.name} failed: {cel_failure(exc, self.source)}"
            ) from exc
        if result is None:
            if not self.nullable:
                raise GrantFailed(f"derive.{self.name} gave null; it is declared nullable: false")
            return None
        if not DERIVED_TYPES[self.declared](result):
            if self.nullable:
                return None
            kind = cel_type(result)
            raise GrantFailed(
                f"derive.{self.name} gave an int out of the range of {self.declared}"
                if kind == "int" and self.declared in ("int", "long")
                else f"derive.{self.name} gave a value of type {kind}, not {self.declared}"
            )
        if self.mask is None:
            return result
        try:
            return self.mask(result)
        except Exception as exc:
            raise GrantFailed(
                f"mask {self.mask_type} on derive.{self.name} failed: {failure_text(exc)}"
            ) from exc


def new_name(
    name: str, label: str, taken: set[str], where: tuple[str, ...], problems: Problems
) -> None:
    """A name the grant adds to the view must be an Avro name the view does not have yet."""
    if not AVRO_NAME_PATTERN.match(name):
        problems.append(
            (
                where,
                f"{label}: {name!r} is not a field name (letters, digits and _, not "
                "starting with a digit)",
            )
        )
    elif name in taken:
        problems.append((where, f"{label}: the view already has a field {name!r}"))
    taken.add(name)


def derived_fields(
    grant: Grant, dataset: Dataset, taken: set[str], problems: Problems
) -> tuple[list[DerivedField], list[dict[str, Any]]]:
    """The grant's derived fields, checked: their expressions typed against the dataset's
    schema, and classified as the most sensitive field each reads."""
    variables = record_variables(dataset)
    made: list[DerivedField] = []
    fields: list[dict[str, Any]] = []
    for name, rule in grant.derive.items():
        where, label = ("derive", name), f"derive.{name}"
        new_name(name, label, taken, where, problems)
        program, error = compile_cel(rule.cel, label)
        if error:
            problems.append(((*where, "cel"), error))
            continue
        checked = check_expression(rule.cel, variables)
        if checked.errors:
            problems += [((*where, "cel"), f"{label}: {e}") for e in checked.errors]
            continue
        found = checked.type
        if found.kind == "dyn":
            problems.append(
                (
                    (*where, "cel"),
                    f"{label}: its type is known only when it runs (dyn); convert it, e.g. "
                    f"string(...), so that it always gives a {rule.type}",
                )
            )
        elif found.kind != "null" and found.kind not in _FITS[rule.type]:
            problems.append(
                (
                    (*where, "type"),
                    f"{label}: the expression gives a {found.kind}, but the field is declared "
                    f"{rule.type}",
                )
            )
        elif (found.nullable or found.kind == "null" or checked.unguarded) and not rule.nullable:
            problems.append(
                (
                    (*where, "nullable"),
                    f"{label}: the expression may give null ({found}), but the field is "
                    "declared nullable: false",
                )
            )
        read = read_fields(dataset, checked.reads)
        level = highest(read.values())
        if level in PROTECTED and rule.mask is None and rule.approved_unmasked is None:
            which = ", ".join(f"{p} ({c})" for p, c in read.items() if c in PROTECTED)
            whole = "the record as a whole, so every field: " if "" in checked.reads else ""
            problems.append(
                (
                    where,
                    f"{label}: reads {whole}{which}; a derived field is as {level} as what it "
                    "reads and would leave unmasked: mask it, or name the approval that "
                    "allows it with approved_unmasked",
                )
            )
        elif (
            level in PROTECTED
            and isinstance(rule.mask, ShowFirst | ShowLast)
            and rule.approved_unmasked is None
        ):
            # A derived value may hold what it reads anywhere, and be longer ('x' + record.id):
            # how many characters of that a mask showing characters reveals, none can say.
            problems.append(
                (
                    (*where, "mask"),
                    f"{label}: reads {level} fields, which a derived value may hold whole: "
                    f"{rule.mask.type} cannot say how much of them it shows; mask the field "
                    "itself, use redact, hash or pseudonym, or name an approval",
                )
            )
        avro: Any = _DERIVED_AVRO[rule.type]
        mask_fn = None
        if rule.mask is not None:
            kind = _DERIVED_KIND.get(rule.type, "other")
            wrong = (
                f"mask {rule.mask.type} does not apply to a {rule.type} field"
                if kind not in rule.mask.accepts()
                else mask_problem(rule.mask, kind, avro, name)
            )
            if wrong:
                problems.append(((*where, "mask"), f"{label}: {wrong}"))
                continue
            avro = rule.mask.result_type(avro)
            mask_fn = rule.mask.function()
        entry: dict[str, Any] = {
            "name": name,
            "type": avro if avro == "null" or not rule.nullable else ["null", avro],
            "classification": level,
            "doc": f"Derived: {rule.cel}",
        }
        if isinstance(entry["type"], list):
            entry["default"] = None
        fields.append(entry)
        made.append(
            DerivedField(
                name,
                program,
                rule.cel,
                rule.type,
                rule.nullable,
                mask_fn,
                rule.mask.type if rule.mask else "",
                frozenset(path.split(".", 1)[0] for path in read),
            )
        )
    return made, fields


def looked_up_fields(
    grant: Grant, dataset: Dataset, taken: set[str], problems: Problems
) -> list[dict[str, Any]]:
    """The grant's looked-up fields, checked: a value looked up by a key tells as much as the
    key, so a personal or sensitive key needs an approval."""
    fields: list[dict[str, Any]] = []
    known = dataset.classifications
    for name, lookup in grant.lookup.items():
        where = ("lookup", name)
        new_name(name, f"lookup.{name}", taken, where, problems)
        level = known.get(lookup.key)
        if level is None:
            problems.append(
                (
                    (*where, "key"),
                    f"lookup.{name}.key: no field {lookup.key!r} in {dataset.qualified_name}",
                )
            )
        elif any(p.startswith(f"{lookup.key}.") for p in known):
            problems.append(
                (
                    (*where, "key"),
                    f"lookup.{name}.key: {lookup.key} is a record; look up by one of its fields",
                )
            )
        elif level in PROTECTED and lookup.approved_unmasked is None:
            problems.append(
                (
                    (*where, "key"),
                    f"lookup.{name}: its key {lookup.key} is {level}, and what is looked up by "
                    "it tells as much as the key: name the approval that allows it with "
                    "approved_unmasked, or look up by another field",
                )
            )
        fields.append(
            {
                "name": name,
                "type": ["null", "string"],
                "default": None,
                "classification": level or "public",
                "doc": f"Looked up in {lookup.table} by {lookup.key}.",
            }
        )
    return fields
