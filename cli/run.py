"""``xbus run ...``: run one component of the bus in the foreground."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from xbus.metrics import serve_metrics
from xbus.settings import bus_settings

app = typer.Typer(help="Run one component of the bus in the foreground.", no_args_is_help=True)

connector = typer.Typer(help="Run a subscriber connector.", no_args_is_help=True)
app.add_typer(connector, name="connector")

MetricsPort = Annotated[int, typer.Option(help="Serve /metrics on this port (0: none).")]


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def engine(
    metrics_port: MetricsPort = 9102,
    app_id: Annotated[str, typer.Option(help="Consumer group of the engine workers.")] = (
        "xbus-engine"
    ),
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "warning",
    discovery_interval: Annotated[
        float, typer.Option(help="Seconds between looks for new gov.* topics.")
    ] = 10.0,
) -> None:
    """The policy engine (a Faust worker): applies grants to gov.* and writes deliver.*.
    When a new gov.* topic with a registered dataset appears, the worker stops cleanly and
    starts again in place (same process id) to subscribe to it."""
    import faust

    from streams.engine import build_app

    restart = threading.Event()

    def on_new_source(topic: str) -> None:
        print(f"new source topic {topic}: restarting the worker to subscribe to it", flush=True)
        restart.set()
        os.kill(os.getpid(), signal.SIGTERM)  # Faust's own clean shutdown

    serve_metrics(metrics_port, bus_settings().metrics_host)
    faust_app = build_app(
        bus_settings(),
        app_id=app_id,
        on_new_source=on_new_source,
        discovery_interval=discovery_interval,
    )
    worker = faust.Worker(faust_app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if restart.is_set():
            os.execv(sys.executable, [sys.executable, "-m", "cli.main", *sys.argv[1:]])


@connector.command("file")
def file_connector(
    subscriber: Annotated[
        list[str],
        typer.Option(help="Whose deliver.<subscriber>.* topics to write; repeat for several."),
    ],
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Base folder: files go to <dir>/<subscriber>/<dataset>.jsonl."),
    ],
    metrics_port: MetricsPort = 9103,
) -> None:
    """The file connector: appends subscribers' events as JSON lines."""
    from consumers.file_sink import FileSink

    serve_metrics(metrics_port, bus_settings().metrics_host)
    stop = _stop_on_signals()

    def show(who: str, dataset: str, event: dict) -> None:  # type: ignore[type-arg]
        record = event["after"] or event["before"] or {}
        label = next(
            (str(record[k]) for k in ("name", "credit_code", "record_id") if k in record), ""
        )
        print(
            f"{who} received {dataset} {event['op']} {label} (event {event['event_id']})",
            flush=True,
        )

    FileSink(bus_settings(), subscriber, directory).run(stop, on_event=show)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Licences issued per second.")] = 1.0,
    count: Annotated[int, typer.Option(help="Stop after this many (0: run until stopped).")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated data.")] = None,
    metrics_port: MetricsPort = 9101,
) -> None:
    """The demo department: the market regulation bureau publishing new business licences."""
    from producers.demo import run_demo

    serve_metrics(metrics_port, bus_settings().metrics_host)
    run_demo(bus_settings(), _stop_on_signals(), rate=rate, count=count, seed=seed)


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8088,
) -> None:
    """The ingest gateway: change events over HTTP (OpenAPI at /docs, metrics at /metrics)."""
    import uvicorn

    from producers.gateway import build_gateway

    uvicorn.run(build_gateway(bus_settings()), host=host, port=port, log_level="warning")
