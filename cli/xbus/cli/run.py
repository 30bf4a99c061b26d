"""``xbus run ...``: run one component of the bus in the foreground."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xbus.cli.output import fail
from xbus.core.errors import XbusError
from xbus.core.metrics import serve_metrics
from xbus.core.settings import bus_settings

if TYPE_CHECKING:
    from xbus.consumers.delivery import Delivery
    from xbus.consumers.sinks.base import Sink

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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes in the group; worker i serves /metrics on the port + i.",
        ),
    ] = 1,
) -> None:
    """The policy engine (a Faust worker around a librdkafka hot path): applies grants to
    gov.* and writes deliver.*. A gov.* topic that appears while it runs is picked up within
    --discovery-interval seconds, and routed once its dataset is registered. Workers with the
    same --app-id share the source partitions: --workers N starts N of them."""
    if workers > 1:
        _run_workers(workers, metrics_port)
        return
    import faust

    from xbus.streams.worker import build_app

    serve_metrics(metrics_port, bus_settings().metrics_host)
    try:
        faust_app = build_app(bus_settings(), app_id=app_id, discovery_interval=discovery_interval)
    except XbusError as exc:  # e.g. no office key to check grants with: refuse to start
        raise fail(exc) from None
    faust.Worker(faust_app, loglevel=loglevel, quiet=True).execute_from_commandline()


def _run_workers(count: int, metrics_port: int) -> None:
    """Run ``count`` engine workers as child processes (each this command with
    ``--workers 1``, its own metrics port); stop them all on a signal or when one ends, and
    end with the first failure's exit code."""
    import subprocess

    args = sys.argv[1:]
    for flag in ("--workers", "--metrics-port"):
        while flag in args:
            i = args.index(flag)
            del args[i : i + 2]
        args = [a for a in args if not a.startswith(f"{flag}=")]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xbus.cli",
                *args,
                "--workers",
                "1",
                "--metrics-port",
                str(metrics_port + i if metrics_port else 0),
            ]
        )
        for i in range(count)
    ]
    stop = _stop_on_signals()
    code = 0
    while not stop.wait(0.5):
        ended = [c.returncode for c in children if c.poll() is not None]
        if ended:
            code = next((rc for rc in ended if rc), 0)
            break
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
    raise typer.Exit(code)


Subscribers = Annotated[
    list[str],
    typer.Option("--subscriber", help="Whose deliver.<subscriber>.* topics; repeat for several."),
]
BatchSize = Annotated[int, typer.Option(help="Events taken from Kafka per batch.")]
GroupId = Annotated[
    str | None,
    typer.Option(help="Consumer group (default: xbus-<connector>-<subscribers>)."),
]


def _quiet_http_clients() -> None:
    # The registry client logs one INFO line per request; nobody needs those.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_connector(
    subscribers: list[str], sink: Sink, metrics_port: int, batch_size: int, group: str | None
) -> None:
    from xbus.consumers.runtime import Connector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _quiet_http_clients()
    serve_metrics(metrics_port, bus_settings().metrics_host)
    stop = _stop_on_signals()

    def show(d: Delivery) -> None:
        record = d.record or {}
        label = next(
            (
                str(record[k])
                for k in ("name", "credit_code", "record_id", "registration_no", "category")
                if k in record
            ),
            "",
        )
        print(
            f"{d.subscriber} received {d.dataset} {d.event['op']} {label} (event {d.event_id})",
            flush=True,
        )

    Connector(
        bus_settings(), subscribers, sink, group_id=group, batch_size=batch_size, on_delivered=show
    ).run(stop)


def _secret(secret_file: Path | None) -> bytes:
    from xbus.consumers.deliveries import read_secret
    from xbus.core.errors import ConfigurationError

    try:
        return read_secret(secret_file, None if secret_file else "XBUS_WEBHOOK_SECRET")
    except ConfigurationError as exc:
        raise typer.BadParameter(f"{exc}; give --secret-file or set XBUS_WEBHOOK_SECRET") from None


@connector.command("webhook")
def webhook_connector(
    subscriber: Subscribers,
    url: Annotated[str, typer.Option(help="The subscriber's endpoint (https://...).")],
    secret_file: Annotated[
        Path | None,
        typer.Option(help="File holding the signing secret (else XBUS_WEBHOOK_SECRET)."),
    ] = None,
    events_per_request: Annotated[
        int, typer.Option(help='1: one event per POST; more: {"events": [...]} per POST.')
    ] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the endpoint.")] = 10.0,
    concurrency: Annotated[
        int,
        typer.Option(help="Requests in flight at once (different keys; a key's are in order)."),
    ] = 8,
    batch_size: BatchSize = 500,
    group: GroupId = None,
    metrics_port: MetricsPort = 9104,
) -> None:
    """POST each event, signed (X-Xbus-Signature) with an Idempotency-Key, to an endpoint."""
    from xbus.consumers.sinks.webhook import WebhookSink

    sink = WebhookSink(
        url,
        _secret(secret_file),
        batch_size=events_per_request,
        timeout=timeout,
        concurrency=concurrency,
    )
    _run_connector(subscriber, sink, metrics_port, batch_size, group)


@connector.command("postgres")
def postgres_connector(
    subscriber: Subscribers,
    dsn: Annotated[
        str,
        typer.Option(
            envvar="XBUS_POSTGRES_DSN", help="The subscriber's database (postgresql://...)."
        ),
    ],
    db_schema: Annotated[
        str | None,
        typer.Option(help="Database schema of the tables (default: the subscriber's name)."),
    ] = None,
    batch_size: BatchSize = 500,
    group: GroupId = None,
    metrics_port: MetricsPort = 9105,
) -> None:
    """Keep one table per dataset up to date, each event applied once."""
    from xbus.consumers.sinks.postgres import PostgresSink

    if len(subscriber) > 1:
        # Each subscriber's view of a dataset has its own columns and rows: one table each.
        raise typer.BadParameter(
            "the PostgreSQL connector keeps one subscriber's tables; run one per subscriber"
        )
    _run_connector(
        subscriber, PostgresSink(dsn, db_schema or subscriber[0]), metrics_port, batch_size, group
    )


@connector.command("file")
def file_connector(
    subscriber: Subscribers,
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Base folder: files go to <dir>/<subscriber>/<dataset>.jsonl."),
    ],
    rotate_mb: Annotated[
        float, typer.Option(help="Start a new file past this size (0: never).")
    ] = 64.0,
    rotate_minutes: Annotated[
        float, typer.Option(help="Start a new file after this long (0: never).")
    ] = 0.0,
    batch_size: BatchSize = 500,
    group: GroupId = None,
    metrics_port: MetricsPort = 9103,
) -> None:
    """Append subscribers' events as JSON lines, rotated by size or age."""
    from xbus.consumers.sinks.file import FileSink

    sink = FileSink.rotating(directory, rotate_mb, rotate_minutes)
    _run_connector(subscriber, sink, metrics_port, batch_size, group)


@app.command()
def deliveries(
    targets: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Delivery files, or folders of them (*.yaml); default $XBUS_DELIVERIES_DIR, "
            "else deliveries/ in the current directory."
        ),
    ] = None,
    check: Annotated[bool, typer.Option(help="Only check the files, then exit.")] = False,
    batch_size: BatchSize = 500,
    metrics_port: MetricsPort = 9106,
) -> None:
    """Run every delivery the subscribers' delivery files declare (webhook, postgres, file),
    each its own connector in this process; one that fails stops them all."""
    from xbus.cli.output import console, fail, problem
    from xbus.consumers.deliveries import build_sink, load_deliveries
    from xbus.consumers.runtime import Connector
    from xbus.core.errors import XbusError

    found, problems = load_deliveries(targets or [bus_settings().deliveries_dir])
    for p in problems:
        problem("invalid", p)
    if problems:
        raise typer.Exit(1)
    plan = [(s.subscriber, i, d) for s in found for i, d in enumerate(s.deliveries)]
    if check:
        for subscriber, _, d in plan:
            console.print(f"{subscriber}: {d.kind}")
        console.print(f"{len(plan)} deliveries of {len(found)} subscribers are valid")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _quiet_http_clients()
    try:
        connectors = [
            Connector(
                bus_settings(),
                [subscriber],
                build_sink(subscriber, d),
                group_id=f"xbus-{d.kind}-{subscriber}" + (f"-{i}" if i else ""),
                batch_size=batch_size,
            )
            for subscriber, i, d in plan
        ]
    except XbusError as exc:
        raise fail(exc) from None
    serve_metrics(metrics_port, bus_settings().metrics_host)
    stop = _stop_on_signals()
    failures: list[BaseException] = []

    def run(connector: Connector) -> None:
        try:
            connector.run(stop)
        except BaseException as exc:  # one broken delivery stops the process, visibly
            logging.exception("%s of %s failed", connector.sink.connector, connector.subscribers)
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, args=(c,), name=c.group_id) for c in connectors]
    for thread in threads:
        thread.start()
    for subscriber, _, d in plan:
        print(f"delivering to {subscriber} by {d.kind}", flush=True)
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.5)
    if failures:
        raise typer.Exit(1)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Licences issued per second.")] = 1.0,
    count: Annotated[int, typer.Option(help="Stop after this many (0: run until stopped).")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated data.")] = None,
    metrics_port: MetricsPort = 9101,
) -> None:
    """The demo department: the market regulation bureau publishing new business licences."""
    from xbus.producers.demo import run_demo

    serve_metrics(metrics_port, bus_settings().metrics_host)
    run_demo(bus_settings(), _stop_on_signals(), rate=rate, count=count, seed=seed)


@app.command()
def gateway(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (XBUS_GATEWAY_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (XBUS_GATEWAY_PORT, 8088).")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics on this port (XBUS_GATEWAY_METRICS_PORT, 9108; 0: none)."
        ),
    ] = None,
) -> None:
    """The ingest gateway: change events over HTTP (OpenAPI at /openapi.json for a key)."""
    import uvicorn

    from xbus.producers.gateway.app import build_gateway
    from xbus.producers.gateway.settings import GatewaySettings

    given = {"host": host, "port": port, "metrics_port": metrics_port}
    settings = GatewaySettings().model_copy(
        update={k: v for k, v in given.items() if v is not None}
    )
    app = build_gateway(bus_settings(), settings)
    serve_metrics(settings.metrics_port, bus_settings().metrics_host)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@app.command()
def sse(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (XBUS_SSE_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (XBUS_SSE_PORT, 8090).")] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            help="The stream tokens file (default: XBUS_SSE_TOKENS_FILE or .xbus/sse-tokens.toml)."
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float | None, typer.Option(help="Seconds between heartbeats on an idle stream.")
    ] = None,
    slow_client_timeout: Annotated[
        float | None,
        typer.Option(help="Cut off a client that takes no data for this many seconds."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics on this port (XBUS_SSE_METRICS_PORT, 9107; 0: none)."),
    ] = None,
) -> None:
    """The live stream: subscribers' datasets as Server-Sent Events on /v1/stream."""
    import uvicorn

    from xbus.consumers.sse.service import StreamSettings, build_stream_service
    from xbus.consumers.sse.tokens import stream_tokens

    given = {
        "host": host,
        "port": port,
        "metrics_port": metrics_port,
        "tokens_file": tokens_file,
        "heartbeat_interval": heartbeat_interval,
        "slow_client_timeout": slow_client_timeout,
    }
    options = StreamSettings().model_copy(update={k: v for k, v in given.items() if v is not None})
    service = build_stream_service(
        bus_settings(),
        stream_tokens(options.tokens_file, options.reload_interval),
        options.resume_secret(),
        options,
    )
    serve_metrics(options.metrics_port, bus_settings().metrics_host)
    # Streams never end on their own: at shutdown, give them a moment, then close them.
    uvicorn.run(
        service,
        host=options.host,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )


@app.command("console")
def office_console(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (XBUS_CONSOLE_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (XBUS_CONSOLE_PORT, 8096).")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics on this port (XBUS_CONSOLE_METRICS_PORT, 9109; 0: none)."
        ),
    ] = None,
) -> None:
    """The office console: catalogue, sharing requests and approvals that become grants."""
    import uvicorn

    from xbus.console.app import open_console
    from xbus.console.settings import ConsoleSettings

    given = {"host": host, "port": port, "metrics_port": metrics_port}
    settings = ConsoleSettings().model_copy(
        update={k: v for k, v in given.items() if v is not None}
    )
    try:
        app = open_console(bus_settings(), settings)
    except XbusError as exc:
        fail(str(exc))
    serve_metrics(settings.metrics_port, bus_settings().metrics_host)
    # Live flows never end on their own: at shutdown, give them a moment, then close them.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )


@app.command("cdc-bridge")
def cdc_bridge(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="CDC source files or folders (default: $XBUS_CDC_SOURCES_DIR, else cdc/).",
            show_default=False,
        ),
    ] = None,
    metrics_port: MetricsPort = 9110,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Debezium records read and published per batch.")
    ] = 2000,
    group: Annotated[
        str, typer.Option(help="Consumer group; bridges in one group share the sources.")
    ] = "xbus-cdc-bridge",
) -> None:
    """Republish Debezium's records of each source's cdc.* topic as its dataset's change
    events (through the Publisher SDK); offsets are committed once Kafka acknowledged them."""
    from xbus.cli.output import load_catalog
    from xbus.producers.cdc.bridge import CdcBridge
    from xbus.producers.cdc.settings import CdcSettings
    from xbus.producers.cdc.sources import require_sources

    catalog = load_catalog()
    try:
        found = require_sources(sources or [CdcSettings().cdc_sources_dir], catalog)
        bridge = CdcBridge(found, bus_settings(), catalog, batch_size=batch_size, group=group)
    except XbusError as exc:
        raise fail(exc) from None
    serve_metrics(metrics_port, bus_settings().metrics_host)
    print(f"bridging {', '.join(s.name for s in found)}", flush=True)
    bridge.run(_stop_on_signals())


@app.command("cdc-demo", hidden=True)
def cdc_demo(
    dsn: Annotated[str, typer.Option(help="The bureau's database (no password).")],
    password_file: Annotated[Path, typer.Option(help="File holding the owner's password.")],
    rate: Annotated[float, typer.Option(help="Statements per second.")] = 0.5,
) -> None:
    """The demo's civil affairs registry office: registers marriages in its own database with
    plain SQL (change data capture brings them onto the bus)."""
    from psycopg.conninfo import make_conninfo

    from xbus.core.secret_files import read_secret
    from xbus.producers.cdc.demo import run_registry_office

    stop = _stop_on_signals()
    print("registering marriages in the civil affairs database (SQL)", flush=True)
    run_registry_office(
        make_conninfo(dsn, password=read_secret(password_file)),
        stop,
        rate=rate,
        report=lambda what: print(f"civil_affairs {what} in its own database", flush=True),
    )
