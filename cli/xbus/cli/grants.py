"""``xbus grants ...``: validate, apply, revoke, list and explain grants; ``xbus reference``
sets reference tables."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from xbus.cli.output import console, fail, load_catalog, problem
from xbus.core.envelope import change_event
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings
from xbus.producers.jsonevents import loads, spec_from_json
from xbus.streams.explanation import as_decoded, explain, explain_json
from xbus.streams.grant_files import apply_grants, load_grants, revoke_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
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
        raise fail(f"no grant {grant} is in force")
    console.print(f"{grant}: revoked")


@app.command("list")
def list_grants() -> None:
    """The grants in force, with their versions and validity."""
    table = Table("grant", "version", "subscriber", "dataset", "valid until", "purpose")
    try:
        stored = current_grants(bus_settings())
    except XbusError as exc:
        raise fail(exc) from None
    for grant_id, (g, version) in sorted(stored.items()):
        table.add_row(
            grant_id,
            str(version),
            g.subscriber,
            g.dataset,
            g.valid_until.isoformat() if g.valid_until else "-",
            g.purpose,
        )
    console.print(table)


@app.command("explain")
def explain_command(
    grant_file: Annotated[Path, typer.Option("--grant", exists=True, help="A grant file.")],
    event_file: Annotated[
        Path, typer.Option("--event", exists=True, help="A change event as JSON.")
    ],
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
    catalog = load_catalog()
    loaded, problems = load_grants([grant_file], catalog)
    if problems:
        raise fail("; ".join(str(p) for p in problems))
    compiled = check_and_compile(loaded[0].grant, catalog)
    assert isinstance(compiled, CompiledGrant)
    from xbus.core.validation import RecordValidator

    dataset = compiled.dataset
    given = loads(event_file.read_text(encoding="utf-8"))
    if isinstance(given, dict):  # as `xbus publish` takes it, or as `xbus tail` shows it
        given.setdefault("op", "CREATE")
        given.pop("source", None)
        for name, expected in (("department", dataset.department), ("dataset", dataset.name)):
            found = given.pop(name, expected)
            if found != expected:
                raise fail(f"{event_file}: {name} is {found!r}; the grant is on {expected!r}")
    spec, errors = spec_from_json(given)
    if spec is None:
        raise fail(f"{event_file}: " + "; ".join(str(e) for e in errors))
    validator = RecordValidator(dataset.schema)
    records = {"before": spec.before, "after": spec.after}
    for side, given_record in records.items():
        if given_record is not None:
            record, errors = validator.conform(given_record, side)
            if errors:
                raise fail(f"{event_file}: " + "; ".join(str(e) for e in errors))
            records[side] = record
    event = change_event(
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
    try:
        now = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
    except ValueError:
        raise fail(f"--at {at}: not an ISO 8601 date and time") from None
    if now.tzinfo is None:
        raise fail(f"--at {at}: give a UTC offset, e.g. 2026-11-30T10:00:00+08:00")
    try:
        decoded = as_decoded(event, dataset)
    except XbusError as exc:
        raise fail(exc) from None
    console.print(explain_json(explain(compiled, decoded, now, PolicySnapshot({}, tables))))


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
