"""``xbus audit verify``: check the audit trail's hash chains to the trail's current end."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer

from xbus.cli.output import console, fail, problem
from xbus.core.settings import BusSettings, bus_settings
from xbus.core.topics import AUDIT_TOPIC
from xbus.streams.audit import verify as verify_chains
from xbus.streams.audit_trail import read_trail

app = typer.Typer(help="The audit trail: verify its hash chains.", no_args_is_help=True)

_COORDINATES = re.compile(r"^(\d+):(\d+)$")


def _start(text: str) -> tuple[int, int] | dt.datetime:
    """``partition:offset``, or an ISO 8601 time (UTC if it names no zone)."""
    found = _COORDINATES.match(text.strip())
    if found:
        return int(found[1]), int(found[2])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither partition:offset (e.g. 2:1500) nor an ISO time "
            "(e.g. 2026-11-30T08:00:00+08:00)",
            param_hint="--from",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _not_found(error: LookupError, topic: str, settings: BusSettings) -> str:
    """What to tell for a trail that could not be read: Kafka shows a topic only to a user
    allowed to read it, so an absent topic may be a refusal."""
    if not str(error).startswith("no topic"):  # a partition out of range: the topic is there
        return str(error)
    user = f"user {settings.sasl_username!r}" if settings.sasl_username else "this client"
    return (
        f"{user} sees no topic {topic!r} on {settings.bootstrap_servers}: it does not exist "
        f"(no engine has run yet), or {user} is not allowed to read it. The audit trail is "
        "for the data-sharing office to verify: run as its user (for make run's stack: "
        'eval "$(xbus stack env)")'
    )


@app.command()
def verify(
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start at partition:offset (that partition alone) or at an ISO time; chains "
            "that begin before it are taken from their first record seen.",
        ),
    ] = None,
    topic: Annotated[str, typer.Option(help="The audit topic to verify.")] = AUDIT_TOPIC,
) -> None:
    """Read the audit trail to its current end and check every chain: prints "N records in
    M chains verified", or the first record altered, removed, inserted or reordered, with
    its partition, offset, chain and seq (exit code 1)."""
    begin = _start(start) if start is not None else None
    settings = bus_settings()
    partition = offset = None
    since = None
    if isinstance(begin, tuple):
        partition, offset = begin
    elif begin is not None:
        since = begin
    try:
        verdict = verify_chains(
            read_trail(settings, topic, partition=partition, offset=offset, since=since),
            midway=begin is not None,
        )
    except LookupError as exc:
        raise fail(_not_found(exc, topic, settings)) from None
    if verdict.begun_midway:
        console.print(
            f"{len(verdict.begun_midway)} chains taken from their first record seen (they "
            f"begin before --from {start}): "
            + ", ".join(f"{c} at seq {s}" for c, s in sorted(verdict.begun_midway.items()))
        )
    if verdict.first_break is not None:
        problem("broken", verdict.first_break)
        console.print(
            f"{verdict.records} records in {verdict.chains} chains verified before the break"
        )
        raise typer.Exit(1)
    where = f" from {start}" if start is not None else ""
    console.print(f"{verdict.records} records in {verdict.chains} chains verified{where}")
