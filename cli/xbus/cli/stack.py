"""``xbus stack ...``: the whole local stack without Docker."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.markup import escape
from rich.panel import Panel

from xbus.cli.demo_cdc import CDC_BRIDGE_METRICS, start_cdc_demo
from xbus.cli.demo_console import CONSOLE_METRICS, CONSOLE_PORT, DEMO_ACCOUNTS, start_console
from xbus.cli.output import console, fail
from xbus.cli.provision import provision_from_file
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.errors import XbusError
from xbus.core.serde import registry_client
from xbus.core.settings import BusSettings
from xbus.deploy.errors import LauncherError
from xbus.deploy.monitoring import ScrapeTarget
from xbus.deploy.process import ManagedProcess
from xbus.deploy.provisioning.bus_file import provisioning_file
from xbus.deploy.stack import LocalStack, StackSettings
from xbus.producers.demodata import DISTRICTS
from xbus.streams.grant_files import apply_grants
from xbus.streams.state import set_reference_table

app = typer.Typer(
    help="Run the local stack: Kafka, the schema registry, PostgreSQL and the bus.",
    no_args_is_help=True,
)

# The demo's subscribers and what each receives under its grant in grants/. The story is
# Shanghai's one-stop enterprise start-up (一网通办, 企业开办): the market regulation bureau
# issues a business licence, and within a second each office gets what its step needs.
DEMO_SUBSCRIBERS: dict[str, str] = {
    "public_security": "the company seal's details (公章刻制), ID number in full",
    "tax_bureau": "what opening the tax account needs (税务登记)",
    "social_security": "the employer registration (社保登记)",
    "one_stop_centre": "Pudong's licences only, ID number masked to its last 4",
    "open_data": "public fields of licences and of 12345 hotline requests",
    "district_cdc": "vaccinations, with identities pseudonymised",
}

ENGINE_METRICS = 9102
CONNECTOR_METRICS = 9103
POSTGRES_CONNECTOR_METRICS = 9105
SSE_PORT = 8090
SSE_METRICS = 9107
# The demo subscriber that can follow its datasets live over the SSE stream.
STREAM_SUBSCRIBER = "open_data"
# The demo subscriber whose datasets are also kept as tables in the stack's PostgreSQL.
TABLE_SUBSCRIBER = "tax_bureau"
DEMO_METRICS = 9101
GATEWAY_PORT = 8088
GATEWAY_METRICS = 9108
# Every component of the demo by its metrics port: what the stack's Prometheus scrapes.
COMPONENT_METRICS = {
    "demo": DEMO_METRICS,
    "engine": ENGINE_METRICS,
    "connector-file": CONNECTOR_METRICS,
    "connector-postgres": POSTGRES_CONNECTOR_METRICS,
    "gateway": GATEWAY_METRICS,
    "sse": SSE_METRICS,
    "console": CONSOLE_METRICS,
}


class _Follower:
    """Prints new lines of some components' logs with a prefix, like ``tail -f``."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}
        self._sources: list[tuple[str, Path, str]] = []

    def add(self, label: str, process: ManagedProcess, style: str) -> None:
        """Follow ``process``'s log from its current end."""
        try:
            self._offsets[process.log_file] = process.log_file.stat().st_size
        except OSError:
            self._offsets[process.log_file] = 0
        self._sources.append((label, process.log_file, style))

    def poll(self) -> None:
        for label, path, style in self._sources:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    f.seek(self._offsets.get(path, 0))
                    text = f.read()
                    self._offsets[path] = f.tell()
            except OSError:
                continue
            for line in text.splitlines():
                console.print(f"[{style}]{label:>10}[/{style}] {escape(line)}")


def _delivered_total(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("xbus_events_delivered_total{")
    )


def _demo_files() -> tuple[Path, Path]:
    """The stream's tokens file and the gateway's keys file the demo runs with: the ones
    ``xbus sse ...`` and ``xbus gateway ...`` use by default (same ``XBUS_HOME``, same
    ``XBUS_SSE_TOKENS_FILE`` and ``XBUS_GATEWAY_KEYS_FILE``), so those commands act on the
    running demo."""
    from xbus.consumers.sse.service import StreamSettings
    from xbus.producers.gateway.settings import GatewaySettings

    return StreamSettings().tokens_file, GatewaySettings().keys_file


def _demo_stream_token(stack: LocalStack, tokens_file: Path) -> Path:
    """The file of the demo stream subscriber's token, kept with the stack's secrets (a real
    subscriber's token is printed once by ``xbus sse new-token`` and never stored); a new
    token when the kept one is not in force in ``tokens_file`` (revoked, or never there)."""
    from xbus.consumers.sse.tokens import new_token, stream_tokens
    from xbus.core.secret_files import write_private

    kept = stack.secrets_dir / "sse-demo.token"
    if kept.exists() and stream_tokens(tokens_file).holder_of(kept.read_text().strip()):
        return kept
    return write_private(kept, new_token(tokens_file, STREAM_SUBSCRIBER))


def _move_resume_secret(stack: LocalStack) -> None:
    """Earlier demos kept the stream's resume-id secret in the data folder; it belongs with
    the other secrets, where the stream now looks (resume ids stay valid)."""
    old, new = stack.data_dir / "sse-resume-secret", stack.secrets_dir / "sse-resume-secret"
    if old.exists() and not new.exists():
        old.replace(new)


@dataclass
class _DemoRun:
    """What the running demo shows: the department's and the subscribers' logs, followed,
    and the live stream's token."""

    follower: _Follower
    sse_token: Path
    console_logins: Path


def _start_infrastructure(stack: LocalStack) -> None:
    """Kafka, the schema registry, PostgreSQL (and Kafka Connect with ``--cdc``),
    answering; a fault ends the command."""
    connect = " and Kafka Connect" if stack.settings.cdc else ""
    console.print(f"starting Kafka, the schema registry, PostgreSQL{connect}...")
    try:
        stack.start()
    except LauncherError as error:
        raise fail(error) from None


def _provision(stack: LocalStack, demo: bool) -> None:
    """Register the dataset schemas; for the demo, also put its grants in force and load
    the districts table."""
    # This process, too, speaks to the stack as its components do: its addresses and the
    # office's credentials (by file).
    os.environ.update(stack.client_env())
    settings = BusSettings()
    catalog = Catalog.load(settings.schemas_dir)
    registered = register_catalog(catalog, registry_client(settings))
    console.print(
        f"{len(registered)} dataset schemas registered "
        f"({sum(r.changed for r in registered)} new or changed)"
    )
    if demo:
        # The demo bus of bus.yaml: topics, a Kafka user per department, subscriber and
        # service, and their ACLs; each component then runs as its own user.
        plan = provision_from_file(settings, provisioning_file(None), quiet=True)
        console.print(f"bus provisioned from bus.yaml ({len(plan.changes())} changes)")
        for applied in apply_grants(settings, catalog, [settings.grants_dir]):
            console.print(
                f"grant {applied.grant} v{applied.version} "
                f"{'applied' if applied.changed else 'in force'}"
            )
        set_reference_table(settings, "districts", DISTRICTS)


def _start_components(stack: LocalStack, rate: float) -> _DemoRun:
    """The engine, the file and PostgreSQL connectors, the gateway, the live stream and the
    demo department, each in its own session; the demo's and the file connector's logs
    are followed from here on."""
    stack.start_component(
        "engine",
        ["run", "engine", "--metrics-port", str(ENGINE_METRICS)],
        "engine.log",
        kafka_user="service.engine",
        registry_user="engine",
    )
    connector = stack.start_component(
        "file connector",
        [
            "run",
            "connector",
            "file",
            *(a for s in DEMO_SUBSCRIBERS for a in ("--subscriber", s)),
            "--dir",
            str(stack.data_dir / "out"),
            "--metrics-port",
            str(CONNECTOR_METRICS),
        ],
        "connector-file.log",
        kafka_user="service.connectors",
        registry_user="reader",
    )
    stack.start_component(
        "postgres connector",
        [
            "run",
            "connector",
            "postgres",
            "--subscriber",
            TABLE_SUBSCRIBER,
            "--metrics-port",
            str(POSTGRES_CONNECTOR_METRICS),
        ],
        "connector-postgres.log",
        kafka_user="service.connectors",
        registry_user="reader",
    )
    tokens_file, keys_file = _demo_files()
    stack.start_component(
        "gateway",
        ["run", "gateway", "--port", str(GATEWAY_PORT), "--metrics-port", str(GATEWAY_METRICS)],
        "gateway.log",
        kafka_user="service.gateway",
        registry_user="reader",
        # The demo shows its API description; a real gateway keeps it behind a key.
        env={"XBUS_GATEWAY_PUBLIC_DOCS": "true", "XBUS_GATEWAY_KEYS_FILE": str(keys_file)},
    )
    sse_token = _demo_stream_token(stack, tokens_file)
    _move_resume_secret(stack)
    stack.start_component(
        "sse",
        [
            "run",
            "sse",
            "--port",
            str(SSE_PORT),
            "--tokens-file",
            str(tokens_file),
            "--metrics-port",
            str(SSE_METRICS),
        ],
        "sse.log",
        kafka_user="service.sse",
        registry_user="reader",
    )
    publisher = stack.start_component(
        "demo",
        ["run", "demo", "--rate", str(rate), "--metrics-port", str(DEMO_METRICS)],
        "demo.log",
        # Each demo department publishes as its own user (xbus.producers.demo.as_department).
        kafka_user="department.market_regulation",
        registry_user="reader",
    )
    logins = start_console(stack)
    office = None
    if stack.settings.cdc:  # a fault is an XbusError, which ends `up` with its message
        office = start_cdc_demo(stack, Catalog.load(BusSettings().schemas_dir))
    follower = _Follower()
    if office is not None:
        follower.add("department", office, "cyan")
    follower.add("department", publisher, "cyan")
    follower.add("subscriber", connector, "green")
    return _DemoRun(follower, sse_token, logins)


def _start_monitoring(stack: LocalStack, demo: bool) -> None:
    """Prometheus scraping the broker and, with the demo, every component; Alertmanager;
    the node exporter."""
    console.print("starting Prometheus, Alertmanager and the node exporter...")
    components = dict(COMPONENT_METRICS) if demo else {}
    if demo and stack.settings.cdc:
        components["cdc-bridge"] = CDC_BRIDGE_METRICS
    stack.start_monitoring(
        [
            ScrapeTarget("xbus", f"127.0.0.1:{port}", {"component": name})
            for name, port in components.items()
        ]
    )


def _panel(stack: LocalStack, demo: _DemoRun | None) -> Panel:
    """Where to look: the stack's addresses and, with the demo, its components, where
    deliveries land, and who receives what."""
    lines = [
        "[bold]xbus is up[/bold]",
        (
            f"Kafka broker     {stack.bootstrap_servers}"
            if len(stack.kafka.nodes) == 1
            else f"Kafka cluster    {stack.bootstrap_servers} (nodes "
            f"{', '.join(map(str, stack.kafka.nodes))}: xbus stack broker stop|kill|start N)"
        ),
        f"schema registry  {stack.registry_url}",
        f"PostgreSQL       {stack.postgres_dsn}",
    ]
    if stack.settings.cdc:
        lines += [
            f"Kafka Connect    {stack.connect_url} (Debezium PostgreSQL; basic auth)",
            "  from a shell   xbus stack connect stop|kill|start",
        ]
    if stack.settings.secured:
        lines.append(
            f"credentials      {stack.secrets_dir} (Kafka: SASL/SCRAM; registry: basic auth; "
            "docs/security.md)"
        )
    if demo is not None:
        lines += [
            f"engine metrics   http://127.0.0.1:{ENGINE_METRICS}/metrics",
            f"connector        http://127.0.0.1:{CONNECTOR_METRICS}/metrics",
            f"demo publisher   http://127.0.0.1:{DEMO_METRICS}/metrics",
            f"ingest gateway   http://127.0.0.1:{GATEWAY_PORT}/docs (keys: xbus gateway new-key)",
            f"gateway metrics  http://127.0.0.1:{GATEWAY_METRICS}/metrics",
            f"delivered files  {stack.data_dir / 'out'}/<subscriber>/",
            f"delivered tables {TABLE_SUBSCRIBER}.* (PGPASSFILE="
            f"{stack.secrets_dir}/postgres/pgpass psql <PostgreSQL above>)",
            f"live stream      http://127.0.0.1:{SSE_PORT}/v1/stream "
            f"({STREAM_SUBSCRIBER}; docs/sse.md)",
            f"  its token      in {demo.sse_token} (a secret: never printed)",
            f"office console   http://127.0.0.1:{CONSOLE_PORT}/ (docs/console.md)",
            f"  demo logins    {', '.join(list(DEMO_ACCOUNTS)[:3])},",
            f"                 {', '.join(list(DEMO_ACCOUNTS)[3:])}",
            f"  passwords      in {demo.console_logins}/<login>.password (never printed)",
            "[bold]the story[/bold]        market_regulation issues business licences (企业开办);",
            "                 within a second each subscriber receives, under grants/:",
            *(f"[green]{name:<17}[/green]{text}" for name, text in DEMO_SUBSCRIBERS.items()),
        ]
    if demo is not None and stack.settings.cdc:
        lines += [
            "[bold]from a database[/bold]  civil_affairs registers marriages with SQL in its own",
            "                 database; Debezium captures them (docs/cdc.md), and",
            f"[green]{'public_security':<17}[/green]receives both parties (household register)",
            f"cdc bridge       http://127.0.0.1:{CDC_BRIDGE_METRICS}/metrics (xbus cdc status)",
        ]
    monitoring = stack.monitoring.config
    lines += [
        f"Prometheus       {monitoring.prometheus_url} (its alerts: /alerts)",
        f"Alertmanager     {monitoring.alertmanager_url}",
        f"overview         {monitoring.console_url}",
        f"logs             {stack.data_dir}",
        "Ctrl-C stops everything.",
    ]
    return Panel.fit("\n".join(lines))


def _watch(stack: LocalStack, stop: threading.Event, demo: _DemoRun | None) -> None:
    """Until ``stop`` is set: print what the department publishes and the subscribers
    receive, the delivered totals every 10 s, and stop if a component dies."""
    last_report = time.monotonic()
    while not stop.wait(0.5):
        if demo is not None:
            demo.follower.poll()
        for process in stack.components:
            if not process.running:
                console.print(
                    f"[red]{process.name} stopped unexpectedly[/red]; last lines "
                    f"of {process.log_file}:\n{escape(process.log_tail())}"
                )
                stop.set()
        if demo is not None and time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            console.print(
                f"[bold]xbus_events_delivered_total[/bold] engine="
                f"{_delivered_total(ENGINE_METRICS):.0f} connector="
                f"{_delivered_total(CONNECTOR_METRICS):.0f}"
            )


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="Also run the engine, a connector and the demo.")
    ] = True,
    rate: Annotated[float, typer.Option(help="Demo licences per second.")] = 1.0,
    brokers: Annotated[int | None, BROKERS_OPTION] = None,
    cdc: Annotated[bool | None, CDC_OPTION] = None,
) -> None:
    """Start the local stack and keep it running until Ctrl-C, which stops everything."""
    stack = LocalStack.persistent(_with_brokers(brokers, cdc))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _start_infrastructure(stack)
    try:
        _provision(stack, demo)
        running = _start_components(stack, rate) if demo else None
        _start_monitoring(stack, demo)
        console.print(_panel(stack, running))
        _watch(stack, stop, running)
    except XbusError as error:
        raise fail(error) from None
    finally:
        console.print("stopping...")
        stack.stop()
        console.print("stopped.")


BROKERS_OPTION = typer.Option(
    "--brokers",
    min=1,
    max=9,
    help="Kafka nodes: 1, or 3 for a replicated cluster (replication factor 3, "
    "min.insync.replicas 2). Default: XBUS_STACK_BROKERS, else 1.",
)


CDC_OPTION = typer.Option(
    "--cdc",
    help="Also run a Kafka Connect worker with Debezium's PostgreSQL connector (change data "
    "capture), after PostgreSQL. Default: XBUS_STACK_CDC, else off.",
    show_default=False,
)


def _with_brokers(brokers: int | None, cdc: bool | None = None) -> StackSettings:
    settings = StackSettings()
    if brokers is not None:
        settings = settings.model_copy(update={"brokers": brokers})
    if cdc:
        settings = settings.model_copy(update={"cdc": True})
    return settings


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(  # noqa: A001
    ctx: typer.Context,
    brokers: Annotated[int | None, BROKERS_OPTION] = None,
    cdc: Annotated[bool | None, CDC_OPTION] = None,
) -> None:
    """Start a throw-away stack, run the command after ``--`` against it, and stop the stack.

    The command sees the stack's addresses and the office's credentials (by file) in XBUS_
    variables (XBUS_BOOTSTRAP_SERVERS, XBUS_SASL_*, XBUS_SCHEMA_REGISTRY_*, XBUS_POSTGRES_DSN,
    with --cdc XBUS_CONNECT_* and XBUS_CDC_SECRETS_DIR, ...), and the stack's folder in
    XBUS_STACK_DATA_DIR (for ``xbus stack broker`` and ``xbus stack connect``); its exit code
    is ours.
    """
    if not ctx.args:
        raise typer.BadParameter("give the command to run after --, e.g. xbus stack exec -- pytest")
    stack = LocalStack.ephemeral(_with_brokers(brokers, cdc))
    console.print(f"starting a test stack in {stack.data_dir}...")
    try:
        stack.start()
    except LauncherError as error:
        stack.remove_data()
        raise fail(error) from None
    console.print(
        f"Kafka on {stack.bootstrap_servers}, registry on {stack.registry_url}, "
        f"PostgreSQL {stack.postgres_dsn}"
        + (f", Kafka Connect on {stack.connect_url}" if stack.settings.cdc else "")
    )
    # Ctrl-C reaches the command (same process group); we wait for it, then clean up. A
    # SIGTERM (a CI job cancelled, a kill) is passed on to it: it must not outlive its stack.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        command = subprocess.Popen(
            ctx.args,
            env={**os.environ, **stack.client_env(), "XBUS_STACK_DATA_DIR": str(stack.data_dir)},
        )
        signal.signal(signal.SIGTERM, lambda *_: command.terminate())
        code = command.wait()
    finally:
        stack.stop()
        stack.remove_data()
    raise typer.Exit(code)


# Settings that would hand a secret's value to the shell: only files are printed.
_SECRET_VALUES = frozenset({"XBUS_SASL_PASSWORD", "XBUS_SCHEMA_REGISTRY_PASSWORD"})


def office_env(stack: LocalStack) -> dict[str, str]:
    """What a command run as the data-sharing office needs to reach ``stack``: its
    addresses, ``admin``'s Kafka login and the registry's office user (passwords by file),
    the secrets folder, the grant keys, and the demo's tokens and keys files. Paths only,
    never a secret's value."""
    tokens_file, keys_file = _demo_files()
    env = {
        "XBUS_HOME": str(stack.settings.home),
        **stack.client_env(),
        "XBUS_SSE_TOKENS_FILE": str(tokens_file),
        "XBUS_GATEWAY_KEYS_FILE": str(keys_file),
    }
    return {k: v for k, v in env.items() if k not in _SECRET_VALUES}


@app.command("env")
def env_command() -> None:
    """Print the ``export`` lines that point a shell at the running ``make run`` stack as
    the data-sharing office: ``eval "$(xbus stack env)"``, then any xbus command (``xbus
    grants apply``, ``xbus audit verify``, ``xbus sse revoke``...). Passwords and keys stay
    in their files; only the files' paths are printed."""
    stack = LocalStack.persistent()
    if not stack.kafka.config.data_dir.is_dir():  # made on the broker's first start
        raise fail(
            f"no local stack in {stack.data_dir}: start it with make run (xbus stack up), "
            "with the same XBUS_HOME"
        )
    for name, value in office_env(stack).items():
        typer.echo(f"export {name}={shlex.quote(value)}")


@app.command()
def down() -> None:
    """Stop whatever a killed ``xbus stack up`` left running."""
    stack = LocalStack.persistent()
    run_dir = stack.data_dir / "run"
    for pid_file in sorted(run_dir.glob("*.pid")) if run_dir.exists() else []:
        ManagedProcess(
            pid_file.stem, [], log_file=Path(os.devnull), pid_file=pid_file
        ).stop_leftover()
    console.print("nothing of the local stack is running.")


broker_app = typer.Typer(
    help="Stop, kill or start one Kafka node of a running stack (a cluster's, to try a fault).",
    no_args_is_help=True,
)
app.add_typer(broker_app, name="broker")

NODE_ARGUMENT = typer.Argument(help="The node's id: 1 to the stack's --brokers.")
DATA_DIR_OPTION = typer.Option(
    "--data-dir",
    envvar="XBUS_STACK_DATA_DIR",
    help="The stack's folder: the one xbus stack exec gives its command in "
    "XBUS_STACK_DATA_DIR; default make run's.",
)


def _running_stack(data_dir: Path | None) -> LocalStack:
    folder = data_dir or LocalStack.persistent().data_dir
    try:
        return LocalStack.attach(folder)
    except LauncherError as error:
        raise fail(error) from None


def _on_node(data_dir: Path | None, node: int, act: str) -> None:
    stack = _running_stack(data_dir)
    try:
        if act == "start":
            stack.kafka.start_node(node, outlive_parent=True)
        elif act == "stop":
            stack.kafka.stop_node(node)
        else:
            stack.kafka.kill_node(node)
    except LauncherError as error:
        raise fail(error) from None
    done = {"start": "answering again", "stop": "stopped", "kill": "killed"}[act]
    console.print(f"Kafka node {node} {done} ({stack.kafka.node(node).config.address})")


@broker_app.command("stop")
def broker_stop(
    node: Annotated[int, NODE_ARGUMENT],
    data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None,
) -> None:
    """Stop node N cleanly (a controlled shutdown: its partitions' leadership moves first)."""
    _on_node(data_dir, node, "stop")


@broker_app.command("kill")
def broker_kill(
    node: Annotated[int, NODE_ARGUMENT],
    data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None,
) -> None:
    """Kill node N at once (SIGKILL), as a crash would."""
    _on_node(data_dir, node, "kill")


@broker_app.command("start")
def broker_start(
    node: Annotated[int, NODE_ARGUMENT],
    data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None,
) -> None:
    """Start node N again and wait until it answers; the stack stops it with the rest."""
    _on_node(data_dir, node, "start")


connect_app = typer.Typer(
    help="Stop, kill or start the Kafka Connect worker of a running stack (to try a fault).",
    no_args_is_help=True,
)
app.add_typer(connect_app, name="connect")


def _on_connect(data_dir: Path | None, act: str) -> None:
    stack = _running_stack(data_dir)
    try:
        if act == "start":
            stack.start_connect(outlive_parent=True)
        elif act == "stop":
            stack.connect.stop()
        else:
            stack.connect.kill()
    except LauncherError as error:
        raise fail(error) from None
    done = {"start": "answering again", "stop": "stopped", "kill": "killed"}[act]
    console.print(f"Kafka Connect {done} ({stack.connect_url})")


@connect_app.command("stop")
def connect_stop(data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None) -> None:
    """Stop the worker cleanly (it leaves its group; its tasks commit their offsets)."""
    _on_connect(data_dir, "stop")


@connect_app.command("kill")
def connect_kill(data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None) -> None:
    """Kill the worker at once (SIGKILL), as a crash would."""
    _on_connect(data_dir, "kill")


@connect_app.command("start")
def connect_start(data_dir: Annotated[Path | None, DATA_DIR_OPTION] = None) -> None:
    """Start the worker (again) and wait until it answers; the stack stops it with the rest."""
    _on_connect(data_dir, "start")
