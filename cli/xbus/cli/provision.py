"""``xbus provision``: make the bus's topics, Kafka users and ACLs what the provisioning file
(``bus.yaml``) says; ``--plan`` only shows what would change; ``--format strimzi`` writes the
same as Strimzi resources for a Kubernetes cluster instead."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
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
from xbus.deploy.provisioning.strimzi import render, strimzi_resources


class Format(StrEnum):
    """Where provisioning goes: the broker itself, or Strimzi resources to apply."""

    BROKER = "broker"
    STRIMZI = "strimzi"


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
    output_format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="broker: make the changes on the broker. strimzi: write the KafkaTopic and "
            "KafkaUser resources that say the same, for Strimzi's operators; the broker is "
            "not touched.",
        ),
    ] = Format.BROKER,
    cluster: Annotated[
        str, typer.Option(help="With --format strimzi: the name of the Strimzi Kafka cluster.")
    ] = "xbus",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="With --format strimzi: write to this file, not to stdout."
        ),
    ] = None,
) -> None:
    """Provision the bus from one file: topics and their settings, a SCRAM user per department,
    subscriber and service, and each user's least-privilege ACLs. Users and ACLs the file no
    longer names are removed (only department.*, subscriber.*, service.*)."""
    settings = bus_settings()
    if output_format is Format.STRIMZI:
        if plan_only or remove_topics or rotate:
            raise typer.BadParameter(
                "--plan, --remove-topics and --rotate act on a broker; with --format strimzi "
                "the operators do (passwords are theirs to generate and rotate)"
            )
        _write_strimzi(settings, provisioning_file(file), cluster, output)
        return
    if output is not None:
        raise typer.BadParameter("--output goes with --format strimzi")
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


def strimzi_from_file(settings: BusSettings, path: Path, cluster: str) -> str:
    """The Strimzi resources (YAML) of the file at ``path``: the topics and principals that
    ``provision_from_file`` would apply, for the Strimzi cluster ``cluster``. Raises
    ``BusFileError`` for a wrong file."""
    bus = load_bus_file(path, Catalog.load(settings.schemas_dir), settings.grants_dir)
    resources = strimzi_resources(
        principals(bus, path.parent), topics(bus), bus.replication_factor, cluster
    )
    return render(resources, path)


def _write_strimzi(settings: BusSettings, path: Path, cluster: str, output: Path | None) -> None:
    try:
        text = strimzi_from_file(settings, path, cluster)
    except BusFileError as exc:
        for found in exc.problems:
            problem("invalid", found)
        raise typer.Exit(1) from None
    except XbusError as exc:
        raise fail(exc) from None
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


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
