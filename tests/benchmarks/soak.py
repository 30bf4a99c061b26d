"""A soak: the bus at a fixed rate for a long time, every component's resident memory, open
file descriptors and threads sampled each minute. It fails when one grows beyond its bound
after the warm-up, or when the subscribers fall behind for good, and prints the series.

The department publishes business licences (creates, updates and deletes over 5,000 keys)
through the Publisher SDK and, a tenth of them, through the ingest gateway; one engine worker
routes them under the demo grants plus two of the soak's own; a PostgreSQL connector and a
webhook connector (to a real HTTP receiver in this process) deliver the soak's two
subscribers' views.

    xbus stack exec -- python -m tests.benchmarks.soak [--minutes 30] [--rate 1000]

Bounds, from the end of the warm-up to the end: resident memory +10% (and at least 20 MB),
file descriptors +10, threads +4.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import Bus
from tests.faults.stream import Stream, licence_grant, through_gateway, through_sdk
from tests.producers.test_gateway import start_gateway
from tests.support.components import component, wait_for
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.serde import registry_client
from xbus.core.settings import BusSettings
from xbus.producers.demodata import DISTRICTS, DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants
from xbus.streams.state import set_reference_table

SECRET = b"soak-webhook-secret-of-at-least-32-bytes-long"
RSS_GROWTH, RSS_SLACK_MB, FD_GROWTH, THREAD_GROWTH = 0.10, 20.0, 10, 4


@dataclass
class Sample:
    minute: float
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Watched:
    name: str
    pid: int
    samples: list[Sample] = field(default_factory=list)

    def sample(self, minute: float) -> None:
        status = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        values = dict(line.split(":", 1) for line in status if ":" in line)
        self.samples.append(
            Sample(
                minute,
                int(values["VmRSS"].split()[0]) / 1024,
                len(os.listdir(f"/proc/{self.pid}/fd")),
                int(values["Threads"]),
            )
        )

    def growth(self, warmup: float) -> list[str]:
        """What grew beyond its bound from the first sample after ``warmup`` minutes on."""
        after = [s for s in self.samples if s.minute >= warmup]
        if len(after) < 2:
            return []
        first, last = after[0], after[-1]
        problems = []
        if last.rss_mb > first.rss_mb + max(RSS_SLACK_MB, first.rss_mb * RSS_GROWTH):
            problems.append(f"{self.name}: memory {first.rss_mb:.0f} → {last.rss_mb:.0f} MB")
        if last.fds > first.fds + FD_GROWTH:
            problems.append(f"{self.name}: file descriptors {first.fds} → {last.fds}")
        if last.threads > first.threads + THREAD_GROWTH:
            problems.append(f"{self.name}: threads {first.threads} → {last.threads}")
        return problems


@contextmanager
def _thread(target: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s in all")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None, help="minutes (default: a sixth)")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else args.minutes / 6

    settings = BusSettings()
    bus = Bus(settings, "environment")
    catalog = Catalog.load(settings.schemas_dir)
    register_catalog(catalog, registry_client(settings))
    tag = uuid.uuid4().hex[:6]
    logs = Path(tempfile.mkdtemp(prefix="xbus-soak-"))
    table_subscriber, hook_subscriber = f"soak_pg_{tag}", f"soak_hook_{tag}"
    apply_grants(
        settings,
        catalog,
        [
            settings.grants_dir,
            licence_grant(logs, table_subscriber, "soak"),
            licence_grant(logs, hook_subscriber, "soak"),
        ],
    )
    set_reference_table(settings, "districts", DISTRICTS)
    secret_file = logs / "webhook.secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    data = DemoData(seed=11)
    licences = [data.business_licence() for _ in range(5000)]
    ts_base = int(time.time() * 1000)
    sdk = Stream(licences[:4500], seed=1, ts_base=ts_base, keep=False)
    gateway_stream = Stream(licences[4500:], seed=2, ts_base=ts_base, keep=False)
    dsn = os.environ["XBUS_POSTGRES_DSN"]
    total = int(args.rate * args.minutes * 60)

    with ExitStack() as stack:
        receiver = stack.enter_context(webhook_receiver(SECRET))
        watched = []
        for name, run_args in (
            ("engine", ("engine", "--app-id", f"soak-{tag}")),
            (
                "postgres connector",
                ("connector", "postgres", "--subscriber", table_subscriber, "--dsn", dsn),
            ),
            (
                "webhook connector",
                ("connector", "webhook", "--subscriber", hook_subscriber, "--url", receiver.url)
                + ("--secret-file", str(secret_file), "--events-per-request", "50"),
            ),
        ):
            process = stack.enter_context(
                component(bus, logs, name.replace(" ", "-"), *run_args, "--metrics-port", "0")
            )
            watched.append(Watched(name, process.pid))
        gateway = stack.enter_context(contextmanager(start_gateway)(bus, logs, "gateway", None))
        watched.append(Watched("gateway", _gateway_pid(logs)))
        publisher = stack.enter_context(
            Publisher("market_regulation", system="soak", settings=settings)
        )
        sdk_share = (total * 9 // 10, args.rate * 0.9)
        stack.enter_context(_thread(lambda stop: sdk.run(through_sdk(publisher), *sdk_share, stop)))
        stack.enter_context(
            _thread(
                lambda stop: gateway_stream.run(
                    through_gateway(gateway.url, gateway.other_key),
                    total // 10,
                    args.rate * 0.1,
                    stop,
                )
            )
        )
        started = time.monotonic()
        print(
            f"soak: {args.rate:,.0f} events/s for {args.minutes:g} min, sampling every "
            f"{args.interval:g} s, warm-up {warmup:g} min; logs in {logs}",
            flush=True,
        )
        lags = []
        while (minute := (time.monotonic() - started) / 60) < args.minutes:
            for w in watched:
                w.sample(minute)
            acked = sdk.count + gateway_stream.count
            lags.append((minute, acked, acked - len(receiver.processed)))
            print(
                f"{minute:6.1f} min  published {acked:>10,}  webhook behind {lags[-1][2]:>8,}  "
                + "  ".join(
                    f"{w.name} {w.samples[-1].rss_mb:.0f} MB/{w.samples[-1].fds} fd/"
                    f"{w.samples[-1].threads} thr"
                    for w in watched
                ),
                flush=True,
            )
            time.sleep(max(0.0, args.interval - (time.monotonic() - started) % args.interval))
        published = sdk.count + gateway_stream.count
        rate = published / (time.monotonic() - started)
        caught_up = True
        try:
            wait_for(lambda: len(receiver.processed) >= published, 300, "the webhook to catch up")
        except AssertionError:
            caught_up = False

    problems = [p for w in watched for p in w.growth(warmup)]
    print(
        f"\npublished {published:,} events ({rate:,.0f}/s); webhook received "
        f"{len(receiver.processed):,}"
    )
    print(f"{'component':<20}{'after warm-up':>28}{'at the end':>28}")
    for w in watched:
        after = [s for s in w.samples if s.minute >= warmup] or w.samples
        first, last = after[0], after[-1]
        print(
            f"{w.name:<20}{first.rss_mb:>10.0f} MB {first.fds:>4} fd {first.threads:>3} thr"
            f"{last.rss_mb:>10.0f} MB {last.fds:>4} fd {last.threads:>3} thr"
        )
    if not caught_up:
        problems.append("the webhook did not catch up within 5 minutes of the end")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("passed: nothing grew beyond its bound after the warm-up")


def _gateway_pid(logs: Path) -> int:
    """The gateway's pid: the process whose command line names its keys file."""
    keys = str(logs / "gateway-keys.toml")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if keys.encode() in (entry / "environ").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("the gateway's process was not found")


if __name__ == "__main__":
    main()
