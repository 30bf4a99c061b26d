"""``xbus cdc ...``: a department's database tables feeding its datasets through Debezium
(docs/cdc.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.markup import escape

from xbus.cli.output import console, fail, load_catalog, problem
from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings
from xbus.producers.cdc.bridge import GROUP
from xbus.producers.cdc.connector import (
    ConnectClient,
    connector_config,
    drop_slot,
    slot_state,
)
from xbus.producers.cdc.readiness import check_source
from xbus.producers.cdc.settings import CdcSettings
from xbus.producers.cdc.sources import CdcSource, require_sources

app = typer.Typer(
    help="Change data capture: department database tables feeding datasets (docs/cdc.md).",
    no_args_is_help=True,
)

Sources = Annotated[
    list[Path] | None,
    typer.Argument(
        help="CDC source files or folders (default: $XBUS_CDC_SOURCES_DIR, else cdc/).",
        show_default=False,
    ),
]
Only = Annotated[
    list[str] | None,
    typer.Option("--source", help="Only this source (department.dataset); may repeat."),
]


def _sources(targets: list[Path] | None, only: list[str] | None) -> tuple[list[CdcSource], Catalog]:
    settings = CdcSettings()
    catalog = load_catalog()
    try:
        sources = require_sources(targets or [settings.cdc_sources_dir], catalog)
    except XbusError as exc:
        raise fail(exc) from None
    if only:
        unknown = set(only) - {s.name for s in sources}
        if unknown:
            raise fail(
                f"no CDC source {', '.join(sorted(unknown))} (known: "
                f"{', '.join(s.name for s in sources)})"
            )
        sources = [s for s in sources if s.name in only]
    return sources, catalog


def _client(settings: CdcSettings) -> ConnectClient:
    try:
        return ConnectClient(settings.connect_url, settings.connect_auth())
    except XbusError as exc:
        raise fail(exc) from None


@app.command()
def check(targets: Sources = None, only: Only = None) -> None:
    """Say, for each source, what its database lacks for change data capture (exit 1 if
    anything), with the statement that mends each."""
    sources, catalog = _sources(targets, only)
    settings = CdcSettings()
    failed = False
    for source in sources:
        missing = check_source(
            source, catalog.get(source.department, source.dataset), settings.cdc_secrets_dir
        )
        if not missing:
            console.print(f"[green]ready[/green] {escape(source.name)} ({escape(source.table)})")
            continue
        failed = True
        console.print(f"[red]not ready[/red] {escape(source.name)} ({escape(source.table)}):")
        for item in missing:
            console.print(f"  - {escape(item.what)}\n    fix: {escape(item.fix)}")
    if failed:
        raise typer.Exit(1)


@app.command()
def apply(
    targets: Sources = None,
    only: Only = None,
    skip_check: Annotated[
        bool, typer.Option(help="Apply even if xbus cdc check finds something missing.")
    ] = False,
) -> None:
    """Create or update each source's Debezium connector on Kafka Connect (after checking
    its database)."""
    sources, catalog = _sources(targets, only)
    settings = CdcSettings()
    client = _client(settings)
    try:
        for source in sources:
            dataset = catalog.get(source.department, source.dataset)
            missing = [] if skip_check else check_source(source, dataset, settings.cdc_secrets_dir)
            if missing:
                problem(
                    "not applied",
                    f"{source.name}: its database is not ready; xbus cdc check says:\n"
                    + "\n".join(f"  - {m.what}" for m in missing),
                )
                raise typer.Exit(1)
            created = client.apply(
                source.connector, connector_config(source, dataset, settings.cdc_secrets_dir)
            )
            console.print(
                f"{'created' if created else 'updated'} connector {escape(source.connector)} "
                f"({escape(source.table)} → {escape(source.topic)})"
            )
    except XbusError as exc:
        raise fail(exc) from None
    finally:
        client.close()


@app.command()
def status(
    targets: Sources = None,
    only: Only = None,
    group: Annotated[str, typer.Option(help="The bridge's consumer group.")] = GROUP,
) -> None:
    """Each source's connector and task state, its replication slot's lag, the bridge's lag
    on its topic, and its last captured change."""
    sources, _ = _sources(targets, only)
    settings = CdcSettings()
    client = _client(settings)
    errors: list[str] = []
    consumer = Consumer(bus_settings().consumer_config(group))
    try:
        for source in sources:
            try:
                state = client.state(source.connector)
            except XbusError as exc:
                raise fail(exc) from None
            try:
                slot = slot_state(source, settings.cdc_secrets_dir)
                behind = "no slot" if slot is None else _bytes(slot.behind_bytes)
            except Exception as exc:  # the database may be down: say so and go on
                behind = "?"
                errors.append(f"{source.name}: cannot read the slot: {exc}")
            lag, last = _kafka(consumer, source.topic)
            if state is not None and state.error:
                errors.append(f"{source.name}: {state.error}")
            console.print(
                f"{escape(source.name)}  connector {state.connector if state else 'absent'}  "
                f"task {state.task if state else '-'}  slot behind {behind}  "
                f"bridge lag {escape(lag)}  last change {last}"
            )
    finally:
        consumer.close()
        client.close()
    for line in errors:
        problem("problem", line)


def _bytes(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


def _kafka(consumer: Consumer, topic: str) -> tuple[str, str]:
    """The bridge's lag on ``topic`` and the commit time of its last record."""
    partition = TopicPartition(topic, 0)
    try:
        low, high = consumer.get_watermark_offsets(partition, timeout=5)
        committed = consumer.committed([partition], timeout=5)[0].offset
    except KafkaException as exc:
        return f"? ({exc.args[0].str() if exc.args else exc})", "?"
    done = committed if committed >= 0 else low
    if high <= low:
        return "0", "none yet"
    consumer.assign([TopicPartition(topic, 0, high - 1)])
    message = consumer.poll(5)
    consumer.unassign()
    last = "?"
    value = None if message is None or message.error() else message.value()
    if value:
        try:
            ts_ms = json.loads(value)["source"]["ts_ms"]
            last = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts_ms / 1000))
        except (ValueError, KeyError, TypeError):
            pass
    return str(max(0, high - done)), last


@app.command()
def remove(
    targets: Sources = None,
    only: Only = None,
    keep_slot: Annotated[
        bool,
        typer.Option(
            help="Keep the replication slot and the connector's offsets, to apply it again "
            "later without a new snapshot (the slot holds WAL on the server meanwhile)."
        ),
    ] = False,
) -> None:
    """Delete each source's connector with its offsets, then its replication slot (an
    abandoned slot keeps WAL on the department's server until its disk is full). Applied
    again, the source starts with a new snapshot."""
    sources, _ = _sources(targets, only)
    settings = CdcSettings()
    client = _client(settings)
    try:
        for source in sources:
            removed = client.remove(source.connector, forget_offsets=not keep_slot)
            console.print(f"{'removed' if removed else 'no'} connector {escape(source.connector)}")
            if keep_slot:
                continue
            dropped = drop_slot(source, settings.cdc_secrets_dir)
            console.print(
                f"{'dropped' if dropped else 'no'} replication slot {escape(source.slot)}"
            )
    except XbusError as exc:
        raise fail(exc) from None
    finally:
        client.close()
