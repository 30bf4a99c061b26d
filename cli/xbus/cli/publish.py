"""``xbus publish``: publish a file of JSON-lines change events for one dataset."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from xbus.cli.output import console, errors, fail, problem
from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import bus_settings
from xbus.core.validation import FieldError
from xbus.producers.exceptions import PublishError
from xbus.producers.jsonevents import loads, spec_from_json
from xbus.producers.publisher import EventSpec, Publisher, Receipt

SHOWN_ERRORS = 20


def _read(path: Path) -> tuple[list[tuple[int, EventSpec]], dict[int, list[FieldError]]]:
    specs: list[tuple[int, EventSpec]] = []
    bad: dict[int, list[FieldError]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                bad[number] = [FieldError(f"column {exc.colno}", f"not valid JSON: {exc.msg}")]
                continue
            spec, found = spec_from_json(obj)
            if spec is None:
                bad[number] = found
            else:
                specs.append((number, spec))
    return specs, bad


def publish(
    dataset: Annotated[str, typer.Option(help="The dataset, as department.dataset or its name.")],
    file: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="JSON lines, one event each.")
    ],
    skip_invalid: Annotated[
        bool,
        typer.Option(
            help="Publish the valid lines even if some are invalid (default: publish nothing)."
        ),
    ] = False,
    system: Annotated[
        str, typer.Option(help="The publishing system, recorded in each event.")
    ] = "xbus-cli",
) -> None:
    """Publish a file of change events. Every line is checked first; by default nothing is
    published if any line is invalid. Exits 1 if any event was rejected or not acknowledged."""
    settings = bus_settings()
    try:
        target = Catalog.load(settings.schemas_dir).find(dataset)
    except XbusError as exc:
        raise fail(exc) from None
    specs, bad = _read(file)
    started = time.monotonic()
    try:
        with Publisher(target.department, system=system, settings=settings) as publisher:
            events, invalid = publisher.check_batch(target.name, [s for _, s in specs])
            for index, found in invalid.items():
                bad[specs[index][0]] = found
            for number in sorted(bad)[:SHOWN_ERRORS]:
                for e in bad[number]:
                    problem(f"{file}:{number}", e)
            if len(bad) > SHOWN_ERRORS:
                errors.print(f"... and {len(bad) - SHOWN_ERRORS} more invalid line(s)")
            if bad and not skip_invalid:
                errors.print(
                    f"{len(bad)} invalid line(s); nothing was published "
                    "(--skip-invalid publishes the valid ones)"
                )
                raise typer.Exit(1)
            valid = [e for i, e in enumerate(events) if i not in invalid]
            failures: list[str] = []
            with Progress(
                TextColumn("publishing {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(target.qualified_name, total=len(valid))

                def done(future: Future[Receipt]) -> None:
                    if future.exception() is not None:
                        failures.append(str(future.exception()))
                    bar.advance(task)

                for future in publisher.produce_checked(target.name, valid):
                    future.add_done_callback(done)
                publisher.flush()
    except PublishError as exc:
        raise fail(exc) from None
    elapsed = time.monotonic() - started
    published = len(valid) - len(failures)
    for failure in failures[:SHOWN_ERRORS]:
        problem("not acknowledged", failure)
    console.print(
        f"{published} published, {len(bad)} invalid skipped, {len(failures)} not "
        f"acknowledged, in {elapsed:.1f}s ({published / max(elapsed, 1e-9):,.0f} events/s)"
    )
    if failures or bad:
        raise typer.Exit(1)
