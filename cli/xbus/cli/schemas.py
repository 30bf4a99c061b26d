"""``xbus schemas ...``: check and register the dataset catalog."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from xbus.cli.output import console, errors, fail, load_catalog, problem
from xbus.core.contracts import (
    ContractProblem,
    check_against_git,
    check_against_registry,
    register_catalog,
)
from xbus.core.errors import XbusError
from xbus.core.serde import registry_client
from xbus.core.settings import bus_settings

app = typer.Typer(help="Check and register the dataset schemas in schemas/.", no_args_is_help=True)


@app.command()
def check(
    registry: Annotated[bool, typer.Option(help="Compare with what the registry holds.")] = True,
    against_git: Annotated[
        str | None,
        typer.Option(
            "--against-git",
            metavar="REVISION",
            help="Also compare with the schemas at this git revision (e.g. origin/main).",
        ),
    ] = None,
) -> None:
    """Every schema parses and carries its metadata, and each change keeps its dataset's
    compatibility mode. Exits 1 naming the dataset, field and rule of every problem."""
    catalog = load_catalog()
    problems: list[ContractProblem] = []
    try:
        if against_git:
            problems += check_against_git(catalog, against_git)
        if registry:
            problems += check_against_registry(catalog, registry_client(bus_settings()))
    except XbusError as exc:
        raise fail(exc) from None
    except Exception as exc:  # the registry refused or did not answer
        raise fail(
            f"could not read the registry at {bus_settings().schema_registry_url}: {exc} "
            "(use --no-registry to skip)"
        ) from None
    for found in problems:
        problem("incompatible", found)
    against = [f"git {against_git}"] if against_git else []
    if registry:
        against.append("the registry")
    if problems:
        errors.print(f"{len(problems)} problem(s) in {len(catalog)} datasets")
        raise typer.Exit(1)
    compatible = f" and are compatible with {' and '.join(against)}" if against else ""
    console.print(f"{len(catalog)} datasets parse and carry their metadata{compatible}.")


@app.command()
def register() -> None:
    """Register every dataset's envelope schema and compatibility mode; re-running changes
    nothing."""
    catalog = load_catalog()
    try:
        done = register_catalog(catalog, registry_client(bus_settings()))
    except XbusError as exc:
        raise fail(exc) from None
    table = Table("dataset", "subject", "schema id", "compatibility", "")
    for r in done:
        table.add_row(
            r.dataset.qualified_name,
            r.subject,
            str(r.schema_id),
            r.dataset.compatibility,
            "registered" if r.changed else "unchanged",
        )
    console.print(table)
