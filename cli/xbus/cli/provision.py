"""``xbus provision``: make the bus's topics, Kafka users and ACLs what the provisioning file
(``bus.yaml``) says; ``--plan`` only shows what would change."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from xbus.cli.output import console, fail, problem
from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import BusSettings, bus_settings
from xbus.deploy.provisioning.access import principals, topics
from xbus.deploy.provisioning.bus_file import FILE_ENV, load_bus_file, provisioning_file
from xbus.deploy.provisioning.cluster import Change, Plan, Provisioner
from xbus.deploy.provisioning.errors import BusFileError


def provision(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help=f"The provisioning file; default ${FILE_ENV}, else bus.yaml."
        ),
    ] = None,
    plan_only: Annotated[
        bool, typer.Option("--plan", help="Show what would change; change nothing.")
    ] = False,
    remove_topics: Annotated[
        bool,
        typer.Option(
            "--remove-topics",
            help="Also remove the gov.*, deliver.* and _xbus.reference.* topics the file no "
            "longer names (their records are lost).",
        ),
    ] = False,
    rotate: Annotated[
        list[str] | None,
        typer.Option(
            "--rotate",
            metavar="USER",
            help="Give USER (e.g. department.health) a new password; repeatable.",
        ),
    ] = None,
) -> None:
    """Provision the bus from one file: topics and their settings, a SCRAM user per department,
    subscriber and service, and each user's least-privilege ACLs. Users and ACLs the file no
    longer names are removed (only department.*, subscriber.*, service.*)."""
    settings = bus_settings()
    try:
        plan = provision_from_file(
            settings,
            provisioning_file(file),
            plan_only=plan_only,
            remove_topics=remove_topics,
            rotate=rotate or (),
        )
    except BusFileError as exc:
        for found in exc.problems:
            problem("invalid", found)
        raise typer.Exit(1) from None
    except XbusError as exc:
        raise fail(exc) from None
    if not plan_only and not plan.empty:
        console.print(
            f"{len(plan.changes())} change(s) made; passwords are in "
            f"{settings.secrets_dir / 'kafka'}/<user>.password"
        )


def provision_from_file(
    settings: BusSettings,
    path: Path,
    *,
    plan_only: bool = False,
    remove_topics: bool = False,
    rotate: Sequence[str] = (),
    quiet: bool = False,
) -> Plan:
    """Plan what the file at ``path`` asks of the cluster, show it (unless ``quiet``) and,
    unless ``plan_only``, apply it; the plan. Raises ``BusFileError`` for a wrong file,
    ``XbusError`` for what the cluster refused."""
    bus = load_bus_file(path, Catalog.load(settings.schemas_dir), settings.grants_dir)
    provisioner = Provisioner(settings)
    plan = provisioner.plan(
        principals(bus, path.parent), topics(bus), remove_topics=remove_topics, rotate=rotate
    )
    if not quiet:
        show(plan, title="What would change" if plan_only else "Changes")
    if not plan_only and not plan.empty:
        provisioner.apply(plan, bus.replication_factor)
    return plan


def show(plan: Plan, *, title: str) -> None:
    """The plan as a table (notes below it), or a line saying there is nothing to do."""
    changes = plan.changes()
    if not changes:
        console.print("Nothing to change: the cluster is as the file says.")
    else:
        table = Table("kind", "action", "what", "detail", title=title, title_justify="left")
        for change in changes:
            table.add_row(change.kind, change.action, change.target, change.detail)
        console.print(table)
    for note in plan.notes:
        _note(note)


def _note(note: Change) -> None:
    problem("note", f"{note.kind} {note.target} {note.action}: {note.detail}")
