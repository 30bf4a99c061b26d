"""End-to-end delivery latency: from a department's send to a subscriber's webhook, through
the real broker, registry, engine and webhook connector.

One grant is in force (tests/benchmarks/grants/bench_0.yaml: a projection of business
licences for subscriber bench_0). One engine worker (``xbus run engine``) and one webhook
connector (``xbus run connector webhook``, batched requests) run as processes; the receiver
is a real HTTP server in this process that checks every signature. For each offered rate,
events are published with the Publisher SDK at that steady rate for the given seconds; the
latency of each is its arrival at the receiver minus the moment it was handed to the SDK.
A rate is held when, at the end of its phase, the receiver is less than one second of events
behind (the lag did not grow).

Then the connector alone: N subscriber-view events pre-loaded onto a subscriber topic are
delivered by a fresh webhook connector, with one event per request and with 100; then N/10
to an endpoint that takes 20 ms to answer (as across a network), with 1, 8 and 32 requests
in flight. events/s is the count over the span from the first arrival to the last.

    make bench
    python -m tests.benchmarks.bench_delivery --rates 500,1000,5000 --seconds 120
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import Bus
from tests.support.components import wait_for, webhook_connector
from tests.support.delivery_feed import DeliveryFeed
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op
from xbus.core.serde import registry_client
from xbus.core.settings import BusSettings
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants

GRANT = Path(__file__).parent / "grants" / "bench_0.yaml"
WARM_UP_EVENTS = 500


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,5000", help="offered events/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--events-per-request", type=int, default=100)
    parser.add_argument(
        "--connector-events", type=int, default=20_000, help="0 skips the connector-alone phase"
    )
    args = parser.parse_args()
    settings = BusSettings()
    catalog = Catalog.load(settings.schemas_dir)
    register_catalog(catalog, registry_client(settings))
    apply_grants(settings, catalog, [GRANT])
    secret = secrets.token_hex(32)
    logs = Path(tempfile.mkdtemp(prefix="xbus-bench-delivery-"))
    data = DemoData(11)
    rows = []
    with webhook_receiver(secret.encode()) as receiver:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "xbus.cli", "run", *command],
                stdout=open(logs / f"{name}.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                env={**os.environ, "XBUS_WEBHOOK_SECRET": secret},
            )
            for name, command in (
                ("engine", ["engine", "--metrics-port", "0", "--app-id", f"bench-{time.time()}"]),
                (
                    "webhook",
                    [
                        "connector",
                        "webhook",
                        "--subscriber",
                        "bench_0",
                        "--url",
                        receiver.url,
                        "--events-per-request",
                        str(args.events_per_request),
                        "--metrics-port",
                        "0",
                        "--group",
                        f"bench-{time.time()}",
                    ],
                ),
            )
        ]
        try:
            with Publisher(
                "market_regulation", system="bench", settings=settings, catalog=catalog
            ) as publisher:
                # Warm up: the engine and connector join their groups and register schemas,
                # and every partition of the source and subscriber topics has been written
                # and read once (a first write to a partition waits for its metadata).
                warm = [
                    publisher.publish("business_licence", Op.CREATE, after=data.business_licence())
                    for _ in range(WARM_UP_EVENTS)
                ]
                publisher.flush()
                wait_for(
                    lambda: all(f.result().event_id in receiver.processed for f in warm),
                    120,
                    "the warm-up's deliveries",
                )
                for rate in [float(r) for r in args.rates.split(",")]:
                    sent: dict[str, float] = {}
                    start = time.monotonic()
                    n = 0
                    while (elapsed := time.monotonic() - start) < args.seconds:
                        due = int(elapsed * rate)
                        while n < due:
                            event_id = str(uuid.uuid4())
                            sent[event_id] = time.time()
                            publisher.publish(
                                "business_licence",
                                Op.CREATE,
                                after=data.business_licence(),
                                event_id=event_id,
                            )
                            n += 1
                        time.sleep(0.001)
                    publisher.flush()
                    behind = sum(1 for e in sent if e not in receiver.processed)
                    held = behind < rate
                    wait_for(
                        lambda sent=sent: all(e in receiver.processed for e in sent),  # type: ignore[misc]
                        max(120, len(sent) / 200),
                        "the phase's events",
                    )
                    latencies = [(receiver.arrival_times[e] - t) * 1000 for e, t in sent.items()]
                    rows.append(
                        (
                            rate,
                            len(sent),
                            _percentile(latencies, 0.5),
                            _percentile(latencies, 0.95),
                            _percentile(latencies, 0.99),
                            behind,
                            held,
                        )
                    )
                    print(
                        f"offered {rate:>6.0f}/s for {args.seconds:.0f}s: {len(sent)} events, "
                        f"p50 {rows[-1][2]:.0f} ms, p95 {rows[-1][3]:.0f} ms, "
                        f"p99 {rows[-1][4]:.0f} ms, behind at the end {behind} "
                        f"({'held' if held else 'not held'})",
                        flush=True,
                    )
        finally:
            for p in processes:
                p.terminate()
            for p in processes:
                p.wait(60)
    phases = [(1, 8, 0.0), (100, 8, 0.0), (1, 1, 0.02), (1, 8, 0.02), (1, 32, 0.02)]
    for per_request, concurrency, delay in phases if args.connector_events else ():
        count = args.connector_events if not delay else args.connector_events // 10
        rate = _connector_alone(settings, count, per_request, concurrency, delay, logs)
        print(
            f"webhook connector alone, {per_request} event(s) per request, "
            f"{concurrency} in flight, endpoint answering in {delay * 1000:.0f} ms: "
            f"{rate:,.0f} events/s over {count} pre-loaded events",
            flush=True,
        )
    held_rates = [r[0] for r in rows if r[6]]
    print(
        f"highest offered rate held: {max(held_rates):.0f} events/s"
        if held_rates
        else "no offered rate was held"
    )
    print(f"component logs: {logs}")


def _connector_alone(
    settings: BusSettings,
    count: int,
    per_request: int,
    concurrency: int,
    delay: float,
    logs: Path,
) -> float:
    subscriber = f"bench_direct_{uuid.uuid4().hex[:6]}"
    feed = DeliveryFeed(settings, subscriber)
    feed.create_licences(count)
    secret = secrets.token_hex(16).encode()
    extra = ("--events-per-request", str(per_request), "--concurrency", str(concurrency))
    with webhook_receiver(secret) as receiver:
        receiver.delay = delay
        with webhook_connector(
            Bus(settings, "environment"), logs, subscriber, subscriber, receiver.url, secret, *extra
        ):
            wait_for(lambda: len(receiver.processed) >= count, 600, "the pre-loaded events")
        times = sorted(receiver.arrival_times.values())
    return count / max(times[-1] - times[0], 1e-9)


if __name__ == "__main__":
    main()
