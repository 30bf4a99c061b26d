"""A connector's memory while its target is down: bounded by one batch and librdkafka's
prefetch, not by the backlog.

For each backlog size, that many subscriber-view events are pre-loaded onto a fresh
subscriber topic; a webhook connector (``xbus run connector webhook``, one event per
request) starts against a real HTTP receiver that answers 503 to everything; the
connector's resident memory is sampled every half second for the given seconds; then the
receiver recovers and the time to deliver the whole backlog is measured.

    xbus stack exec -- python -m tests.benchmarks.bench_backpressure --backlogs 10000,100000
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import Bus
from tests.support.components import wait_for, webhook_connector
from tests.support.delivery_feed import DeliveryFeed
from tests.support.webhook_receiver import webhook_receiver
from xbus.core.settings import BusSettings


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _run(settings: BusSettings, backlog: int, seconds: float, logs: Path) -> None:
    subscriber = f"bench_bp_{uuid.uuid4().hex[:6]}"
    feed = DeliveryFeed(settings, subscriber)
    feed.create_licences(backlog)
    secret = secrets.token_hex(16).encode()
    bus = Bus(settings, "environment")
    with webhook_receiver(secret) as receiver:
        receiver.fail_with = 503
        with webhook_connector(bus, logs, subscriber, subscriber, receiver.url, secret) as process:
            wait_for(lambda: receiver.failed_requests > 0, 60, "the first attempt")
            samples = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                samples.append(_rss_mb(process.pid))
                time.sleep(0.5)
            receiver.fail_with = None
            started = time.monotonic()
            wait_for(lambda: len(receiver.processed) >= backlog, 900, "the backlog")
            drained = time.monotonic() - started
    print(
        f"backlog {backlog:>7,} events, target down {seconds:.0f}s: connector RSS "
        f"{samples[0]:.0f} MB at first failure, max {max(samples):.0f} MB, "
        f"last {samples[-1]:.0f} MB; backlog delivered in {drained:.0f}s after recovery "
        f"({backlog / drained:,.0f} events/s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", default="10000,100000")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="xbus-bench-backpressure-"))
    for backlog in [int(b) for b in args.backlogs.split(",")]:
        _run(BusSettings(), backlog, args.seconds, logs)


if __name__ == "__main__":
    main()
