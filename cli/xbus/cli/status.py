"""``xbus status``: the bus at a glance in the terminal, read from Prometheus or straight from
the components' ``/metrics`` endpoints (the numbers come from ``xbus.core.bus_status``; this
module only draws them)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from xbus.cli.output import console, fail, problem
from xbus.cli.stack import (
    CONNECTOR_METRICS,
    DEMO_METRICS,
    ENGINE_METRICS,
    GATEWAY_METRICS,
    POSTGRES_CONNECTOR_METRICS,
    SSE_METRICS,
)
from xbus.core.bus_status import BusSnapshot, GrantsOverview, snapshot
from xbus.core.metric_sources import (
    BusReader,
    Endpoint,
    EndpointsReader,
    MetricsUnreachable,
    PrometheusReader,
)

# The metrics ports of the stack `make run` starts.
STACK_ENDPOINTS = (
    Endpoint("demo publisher", f"http://127.0.0.1:{DEMO_METRICS}/metrics"),
    Endpoint("engine", f"http://127.0.0.1:{ENGINE_METRICS}/metrics"),
    Endpoint("file connector", f"http://127.0.0.1:{CONNECTOR_METRICS}/metrics"),
    Endpoint("postgres connector", f"http://127.0.0.1:{POSTGRES_CONNECTOR_METRICS}/metrics"),
    Endpoint("live stream", f"http://127.0.0.1:{SSE_METRICS}/metrics"),
    Endpoint("gateway", f"http://127.0.0.1:{GATEWAY_METRICS}/metrics"),
)


def _rate(per_second: float) -> str:
    return f"{per_second:.2f}/s"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``5 h 20 min``, ``364 d``; ``—`` for none."""
    if seconds is None:
        return "—"
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d"


def _departments(bus: BusSnapshot) -> Table:
    table = Table(title="Departments", title_justify="left")
    for column in ("department", "published/s", "published", "rejected/s"):
        table.add_column(column, justify="left" if column == "department" else "right")
    for d in bus.departments:
        table.add_row(
            escape(d.department),
            _rate(d.published_per_second),
            _count(d.published),
            _rate(d.rejected_per_second),
        )
    return table


def _subscribers(bus: BusSnapshot) -> Table:
    table = Table(
        title="Subscribers",
        title_justify="left",
        caption="to topic: written by the engine to the subscriber's topics; delivered: "
        "handed to its targets by its connectors",
        caption_justify="left",
    )
    columns = (
        "subscriber",
        "to topic/s",
        "delivered/s",
        "delivered",
        "filtered/s",
        "denied/s",
        "lag",
        "failures",
        "retries",
        "oldest waiting",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "subscriber" else "right")
    for s in bus.subscribers:
        table.add_row(
            escape(s.subscriber),
            _rate(s.routed_per_second),
            _rate(s.delivered_per_second),
            _count(s.delivered),
            _rate(s.filtered_per_second),
            _rate(s.denied_per_second),
            _count(s.lag),
            Text(_count(s.failures), style="red" if s.failures else ""),
            _count(s.retries),
            _duration(s.oldest_waiting_seconds),
        )
    return table


def _grants(grants: GrantsOverview) -> Text:
    line = Text("Grants  ", style="bold")
    line.append(f"in force: {_count(grants.in_force)}")
    soon = grants.next_expiry
    if soon is None:
        line.append("; none expires")
    else:
        line.append(
            f"; next to expire: {soon.grant} ({soon.subscriber} on {soon.dataset}) "
            f"in {_duration(soon.seconds)}",
            style="yellow" if soon.seconds < 7 * 86400 else "",
        )
    if grants.expired:
        line.append(f"; expired: {grants.expired}", style="red")
    return line


def _components(bus: BusSnapshot) -> Table:
    table = Table(title="Components", title_justify="left")
    for column in ("component", "address", "state", "problem"):
        table.add_column(column)
    for c in bus.components:
        table.add_row(
            escape(c.name),
            escape(c.address),
            Text("up", style="green") if c.up else Text("down", style="bold red"),
            escape(c.problem),
        )
    return table


def render(bus: BusSnapshot) -> RenderableType:
    """The snapshot as the terminal shows it: a heading, then departments, subscribers,
    grants and components."""
    taken = dt.datetime.fromtimestamp(bus.taken_at).astimezone().isoformat(timespec="seconds")
    heading = Text(f"xbus status at {taken}, from {bus.source}; {bus.window}", style="bold")
    return Group(
        heading,
        _departments(bus),
        _subscribers(bus),
        _grants(bus.grants),
        _components(bus),
    )


def status(
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            envvar="XBUS_PROMETHEUS_URL",
            help="Read from this Prometheus (its HTTP query API), e.g. http://127.0.0.1:9090.",
        ),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            help="Without Prometheus: a component's metrics endpoint, URL or NAME=URL "
            "(repeatable); default: the ports of `make run`'s stack.",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print one snapshot and exit, instead of a live view.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between refreshes of the live view.", min=1)
    ] = 5.0,
    sample_seconds: Annotated[
        float,
        typer.Option(help="Endpoints: seconds between the two scrapes of the first rates.", min=1),
    ] = 3.0,
    window: Annotated[str, typer.Option(help="Prometheus: the window of rate().")] = "1m",
) -> None:
    """Show the bus: publish rates per department; per subscriber what was delivered,
    filtered and denied, lag, failures and the oldest event waiting; grants; components."""
    reader: BusReader
    if prometheus:
        reader = PrometheusReader(prometheus, window)
    else:
        endpoints = [Endpoint.parse(m) for m in metrics] if metrics else list(STACK_ENDPOINTS)
        reader = EndpointsReader(endpoints, sample_seconds)
    try:
        bus = _read(reader)
        if once:
            console.print(render(bus))
            return
        with Live(render(bus), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    bus = snapshot(reader.read())
                    shown = render(bus)
                except MetricsUnreachable as exc:
                    # The last snapshot stays in view, under what went wrong.
                    shown = Group(render(bus), Text(f"error: {exc}", style="red"))
                live.update(shown, refresh=True)
    except KeyboardInterrupt:
        # Ctrl-C is how the live view ends (and how a person gives up waiting on --once).
        return
    finally:
        reader.close()


def _read(reader: BusReader) -> BusSnapshot:
    """The first snapshot; ends the command when nothing answers (a live view, once up,
    keeps showing what is down)."""
    try:
        bus = snapshot(reader.read())
    except MetricsUnreachable as exc:
        raise fail(exc) from None
    if not bus.reachable:
        console.print(_components(bus))
        where = ", ".join(c.address for c in bus.components) or "no target configured"
        problem("error", f"no component of the bus answered ({where}); is it running?")
        raise typer.Exit(1)
    return bus
