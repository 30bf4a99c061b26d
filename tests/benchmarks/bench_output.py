"""What the engine's output contract costs: raw confluent-kafka producing the records the
engine writes for one event (ten views of ~300 bytes and one audit record of ~1 KB) with
the headers and delivery reports of each variant, alone on the machine, in one run.

    xbus stack exec -- python -m tests.benchmarks.bench_output [--events 20000]

Variants: the six headers the engine wrote until the output contract was measured (event
id, grant id and version, source topic, partition and offset); the two it writes now (event
id, and one ``xbus-origin`` header packing the grant and the source coordinates); one; none;
and, for each, a delivery report per record or only for failures (``delivery.report.only.error``
with one callback that counts refusals).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

from confluent_kafka import Producer

from xbus.core.admin import ensure_topics
from xbus.core.settings import BusSettings

VIEWS = 10


def _headers(kind: str, event_id: bytes, grant: int, offset: int) -> list[tuple[str, bytes]]:
    if kind == "none":
        return []
    if kind == "one":
        return [("xbus-event-id", event_id)]
    if kind == "two":
        origin = f"bench-{grant}-grant;3;gov.market_regulation.business_licence;5;{offset}"
        return [("xbus-event-id", event_id), ("xbus-origin", origin.encode())]
    return [
        ("xbus-event-id", event_id),
        ("xbus-grant-id", f"bench-{grant}-grant".encode()),
        ("xbus-grant-version", b"3"),
        ("xbus-source-topic", b"gov.market_regulation.business_licence"),
        ("xbus-source-partition", b"5"),
        ("xbus-source-offset", str(offset).encode()),
    ]


def _run(
    settings: BusSettings, topics: list[str], events: int, kind: str, errors_only: bool
) -> float:
    config: dict[str, Any] = {"linger.ms": 5}
    if errors_only:
        config["delivery.report.only.error"] = True
    producer = Producer(settings.producer_config(**config))
    refused: list[Any] = []

    def report(error: Any, _: Any) -> None:
        if error is not None:
            refused.append(error)

    view, audit = os.urandom(300), os.urandom(1000)
    started = time.perf_counter()
    for n in range(events):
        event_id = str(uuid.uuid4()).encode()
        for g in range(VIEWS + 1):
            topic = topics[g]
            while True:
                try:
                    producer.produce(
                        topic,
                        view if g < VIEWS else audit,
                        event_id[:32],
                        headers=_headers(kind, event_id, g, n),
                        on_delivery=report,
                    )
                    break
                except BufferError:
                    producer.poll(0.005)
        if n % 1000 == 999:
            producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    assert remaining == 0 and not refused, (remaining, refused[:3])
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    settings = BusSettings()
    tag = uuid.uuid4().hex[:6]
    topics = [f"bench.output.{tag}.{g}" for g in range(VIEWS + 1)]
    ensure_topics(settings, dict.fromkeys(topics, 3))
    _run(settings, topics, 2000, "six", False)  # warm-up: connections, metadata
    results = {}
    for kind in ("six", "two", "one", "none"):
        for errors_only in (False, True):
            rate = _run(settings, topics, args.events, kind, errors_only)
            results[(kind, errors_only)] = rate
            reports = "failures only" if errors_only else "every record"
            print(
                f"{kind:>4} headers, reports for {reports:>13}: {rate:8,.0f} events/s "
                f"({rate * (VIEWS + 1):,.0f} records/s)",
                flush=True,
            )
    base = results[("six", False)]
    print(
        f"two headers / six: {results[('two', False)] / base:.2f}x; "
        f"with failure-only reports: {results[('two', True)] / base:.2f}x"
    )


if __name__ == "__main__":
    main()
