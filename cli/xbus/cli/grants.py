"""``xbus grants ...``: validate, apply, revoke, list and explain grants; ``xbus reference``
sets reference tables."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from xbus.cli.output import console, fail, load_catalog, problem
from xbus.core.catalog import Dataset
from xbus.core.envelope import ChangeEvent, Op, change_event
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings
from xbus.core.validation import FieldError, RecordValidator
from xbus.producers.jsonevents import spec_from_json
from xbus.streams.explanation import as_decoded, explain, explain_json
from xbus.streams.grant_files import apply_grants, load_grants, revoke_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import Refusal
from xbus.streams.state import PolicySnapshot, current_grants, set_reference_table

app = typer.Typer(help="Validate, apply, revoke and explain access grants.", no_args_is_help=True)
reference = typer.Typer(help="Reference tables the grants' lookups read.", no_args_is_help=True)

Targets = Annotated[list[Path], typer.Argument(help="Grant files, or folders of *.yaml files.")]


@app.command()
def validate(targets: Targets) -> None:
    """Check grant files against the catalog and each other; every mistake with file, line
    and reason. Exits 1 if there is any."""
    loaded, problems = load_grants(targets, load_catalog())
    for found in problems:
        problem("invalid", found)
    if problems:
        raise typer.Exit(1)
    for item in loaded:
        for note in item.notes:
            problem("note", note)
    console.print(f"{len(loaded)} grant(s) valid.")


@app.command()
def apply(targets: Targets) -> None:
    """Validate the grant files and put them in force (a new version for each changed one);
    running engines pick them up without a restart."""
    try:
        done = apply_grants(bus_settings(), load_catalog(), targets)
    except XbusError as exc:
        raise fail(exc) from None
    for item in done:
        state = "applied" if item.changed else "unchanged"
        console.print(f"{item.grant} v{item.version}: {state}")


@app.command()
def revoke(grant: Annotated[str, typer.Argument(help="The grant's id.")]) -> None:
    """Revoke a grant: delivery under it stops without a restart."""
    try:
        revoked = revoke_grant(bus_settings(), grant)
    except XbusError as exc:
        raise fail(exc) from None
    if not revoked:
        raise fail(f"no grant {grant} is on the grants topic")
    console.print(f"{grant}: revoked")


@app.command("list")
def list_grants() -> None:
    """The grants in force, with their versions and validity, and the grant ids whose record
    on the grants topic engines refuse (unsigned, not signed by the office, invalid,
    unreadable), with why: checked as the engine checks them, with the office's public key
    (XBUS_GRANT_VERIFY_KEY_FILE) against the catalog."""
    table = Table("grant", "version", "state", "subscriber", "dataset", "valid until", "purpose")
    try:
        on_topic = current_grants(bus_settings(), load_catalog())
    except XbusError as exc:
        raise fail(exc) from None
    rows: dict[str, CompiledGrant | Refusal] = {**on_topic.in_force, **on_topic.refused}
    for grant_id, item in sorted(rows.items()):
        if isinstance(item, CompiledGrant):
            g = item.grant
            until = g.valid_until.isoformat() if g.valid_until else "-"
            table.add_row(
                grant_id, str(item.version), "in force", g.subscriber, g.dataset, until, g.purpose
            )
        else:
            version = "-" if item.version is None else str(item.version)
            table.add_row(grant_id, version, f"refused: {item.reason}", "-", "-", "-", "-")
    console.print(table)
    for grant_id, refusal in sorted(on_topic.refused.items()):
        console.print(
            f"refused: {grant_id} ({refusal.reason}) at {refusal.where}: {refusal.detail}; "
            "engines enforce nothing under this id until the office applies it again",
            markup=False,
        )


@app.command("explain")
def explain_command(
    grant_file: Annotated[Path, typer.Option("--grant", help="A grant file.")],
    event_file: Annotated[Path, typer.Option("--event", help="A change event as JSON.")],
    at: Annotated[
        str | None, typer.Option(help="The moment to judge validity at (ISO 8601); default now.")
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="A reference table for the grant's lookups, as NAME=FILE (a JSON object of "
            "code: value); repeat for several. Without it, looked-up fields are null."
        ),
    ] = None,
) -> None:
    """Show what the grant's subscriber would receive of an example event, and which rule
    decided each field: the engine's own decision on the event as the engine would decode
    it."""
    tables = {name: _entries(name, Path(file)) for name, file in _pairs(reference or [])}
    now = _moment(at)
    if not grant_file.is_file():
        raise fail(f"--grant {grant_file}: give one grant file (a YAML file), not a folder")
    catalog = load_catalog()
    loaded, problems = load_grants([grant_file], catalog)
    if problems:
        raise fail("; ".join(str(p) for p in problems))
    compiled = check_and_compile(loaded[0].grant, catalog)
    assert isinstance(compiled, CompiledGrant)
    event = _example_event(event_file, compiled.dataset)
    try:
        decoded = as_decoded(event, compiled.dataset)
    except XbusError as exc:
        raise fail(exc) from None
    console.print(explain_json(explain(compiled, decoded, now, PolicySnapshot({}, tables))))


def _moment(at: str | None) -> dt.datetime:
    """The moment ``--at`` names, or now."""
    if at is None:
        return dt.datetime.now(dt.UTC)
    try:
        now = dt.datetime.fromisoformat(at.strip())
    except ValueError:
        raise fail(
            f"--at {at!r}: not an ISO 8601 date and time, e.g. 2026-11-30T10:00:00+08:00"
        ) from None
    if now.tzinfo is None:
        raise fail(f"--at {at}: give a UTC offset, e.g. 2026-11-30T10:00:00+08:00")
    return now


# The images each operation carries, as the Publisher SDK requires them.
_IMAGES = {
    Op.CREATE: ("after",),
    Op.SNAPSHOT: ("after",),
    Op.UPDATE: ("before", "after"),
    Op.DELETE: ("before",),
}


def _example_event(event_file: Path, dataset: Dataset) -> ChangeEvent:
    """The change event in ``event_file`` (as ``xbus publish`` takes it, or as ``xbus tail``
    shows it), checked as the Publisher SDK checks an event; exits with one clear line, which
    never quotes a personal or sensitive value, if it is not one."""
    if event_file.is_dir() or not event_file.exists():
        what = "a folder" if event_file.is_dir() else "no such file"
        raise fail(f"--event {event_file}: {what}; give one change event as a JSON file")
    try:
        text = event_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"--event {event_file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise fail(f"{event_file}: not UTF-8 text; save the event as UTF-8 JSON") from None
    if not text.strip():
        raise fail(f"{event_file}: empty; give one change event as a JSON object")
    try:
        given = json.loads(text, parse_float=decimal.Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise fail(f"{event_file}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except ValueError as exc:
        raise fail(f"{event_file}: not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise fail(f"{event_file}: give one change event as a JSON object")
    given.pop("source", None)
    for name, expected in (("department", dataset.department), ("dataset", dataset.name)):
        found = given.pop(name, expected)
        if found != expected:
            raise fail(f"{event_file}: {name} is {found!r}; the grant is on {expected!r}")
    if "op" not in given:
        raise fail(f"{event_file}: no op; say which it is: {', '.join(Op)}")
    spec, errors = spec_from_json(given)
    if spec is None:
        raise fail(f"{event_file}: " + "; ".join(_unquoted(e, dataset) for e in errors))
    records = {"before": spec.before, "after": spec.after}
    missing = [side for side in _IMAGES[spec.op] if records[side] is None]
    if missing:
        raise fail(
            f"{event_file}: {spec.op.value} carries {' and '.join(_IMAGES[spec.op])}; "
            f"{' and '.join(missing)} is missing"
        )
    validator = RecordValidator(dataset.schema)
    for side, given_record in records.items():
        if given_record is not None:
            record, errors = validator.conform(given_record, side)
            if errors:
                raise fail(f"{event_file}: " + "; ".join(_unquoted(e, dataset) for e in errors))
            records[side] = record
    return change_event(
        department=dataset.department,
        dataset=dataset.name,
        op=spec.op,
        before=records["before"],
        after=records["after"],
        system="xbus grants explain",
        trace_id=spec.trace_id,
        ts_ms=spec.ts_ms,
        event_id=spec.event_id,
    )


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_GOT = re.compile(r"got (\w+) .*$", re.DOTALL)


def _unquoted(error: FieldError, dataset: Dataset) -> str:
    """``error`` as one line that never quotes the value of a personal or sensitive field:
    for such a field, the type it was given, not the value."""
    path = re.sub(r"\[\d+\]", "", error.path).split(".", 1)
    field = path[1] if len(path) > 1 and path[0] in ("before", "after") else ""
    level = max(
        (
            c
            for p, c in dataset.classifications.items()
            if field and (p == field or field.startswith(f"{p}."))
        ),
        key=("public", "internal", "personal", "sensitive").index,
        default="public",
    )
    if level in ("personal", "sensitive"):
        message = _GOT.sub(rf"got a \1 (not shown: the field is {level})", error.message)
        if message == error.message and "got" in message:
            message = (
                message.split("got", 1)[0] + f"got a value that does not fit (not shown: {level})"
            )
        return f"{error.path}: {message}"
    return str(error)


def _pairs(options: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for option in options:
        name, sep, file = option.partition("=")
        if not sep or not name or not file:
            raise fail(
                f"--reference {option}: write it as NAME=FILE, e.g. districts=districts.json"
            )
        pairs.append((name, file))
    return pairs


def _entries(table: str, file: Path) -> dict[str, str]:
    """A reference table's entries from a JSON object of code: value, as the engine keeps
    them (both as text)."""
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"reference table {table}: cannot read {file}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{file}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(entries, dict):
        raise fail(f"{file}: expected a JSON object of code: value")
    return {str(code): str(value) for code, value in entries.items()}


@reference.command("set")
def set_reference(
    table: Annotated[str, typer.Argument(help="The table's name, e.g. districts.")],
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="A JSON object of code: value. Without it, `districts` is set to the city's "
            "16 districts shipped with xbus.",
        ),
    ] = None,
) -> None:
    """Put a reference table's entries in force (running engines pick them up)."""
    if file is None:
        if table != "districts":
            raise fail(f"reference table {table!r}: say where its entries are with --file")
        from xbus.producers.demodata import DISTRICTS

        entries: object = DISTRICTS
    else:
        try:
            entries = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise fail(f"{file}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(entries, dict):
        raise fail(f"{file}: expected a JSON object of code: value")
    try:
        set_reference_table(bus_settings(), table, entries)
    except XbusError as exc:
        raise fail(exc) from None
    console.print(f"{len(entries)} entries of {table} set.")
