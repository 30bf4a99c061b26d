"""Policy engine throughput, added latency and memory, next to two raw confluent-kafka
anchors measured in the same run.

1. N realistic business licences are written to the dataset's topic; the ten grants of
   tests/benchmarks/grants/ (projections, each mask kind, a row filter, a derived and a
   looked-up field) are in force, and no other bench grant.
2. Engine: W workers (``xbus run engine``, a new consumer group starting at the end of the
   topic as it was before the N events, so earlier runs on the same stack do not count) work
   through them; events/s is N over the span between the first and last record written to
   one subscriber's topic (start-up is not counted). The workers' resident memory is sampled
   meanwhile. Then M more events at a steady rate give the added latency of each: the
   timestamp of its output record minus that of its source record (both set by producers).
   What the engine wrote for those M events is read back: the fan-out anchor replays it.
3. Anchors, each alone on the machine: a raw consume→produce passthrough of the same N
   records (then a latency phase of its own), and a raw fan-out that, for each of the N
   records, produces the very records the engine wrote for one event (same count, keys,
   values and headers: the engine's output with no policy work). Both commit after their
   writes are acknowledged, as the engine does.
4. Grants scaling: the engine on one worker with 1, 10 and 50 grants on the dataset (the ten
   grants' kinds repeated for more subscribers), S events each.

    make bench ENGINE_BENCH_ARGS="--workers 1 2"
    python -m tests.benchmarks.bench_engine --events 20000 --scaling-events 3000
    python -m tests.benchmarks.bench_engine --long         # RSS at 100k and 1M events
(under ``xbus stack exec --``, or against the XBUS_* settings, from the checkout's root)
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.benchmarks.engine_harness import (
    EngineWorkers,
    Out,
    RawLoop,
    delete_topics,
    end_offsets,
    fan_out,
    output_times,
    outputs_of,
    passthrough,
    produce_events,
    start_group_at,
)
from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.contracts import register_catalog
from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
from xbus.core.serde import WireEncoder, registered_schema_id, registry_client
from xbus.core.settings import BusSettings
from xbus.core.topics import AUDIT_TOPIC, value_subject
from xbus.producers.demodata import DISTRICTS, DemoData
from xbus.streams.grant_files import apply_grants, revoke_grant
from xbus.streams.state import grant_records, set_reference_table

GRANTS = Path(__file__).parent / "grants"
DEPARTMENT, DATASET = "market_regulation", "business_licence"
BENCH_GRANT = re.compile(r"bench-(\d+)-")
MB = 1024 * 1024

Events = list[tuple[bytes, bytes]]


def _events(settings: BusSettings, catalog: Catalog, count: int, seed: int) -> Events:
    """``count`` new business licences as their department writes them (key, value)."""
    dataset = catalog.get(DEPARTMENT, DATASET)
    schema_id = registered_schema_id(
        registry_client(settings), value_subject(dataset.topic), dataset.envelope
    )
    assert schema_id is not None
    encoder, name, data = (
        WireEncoder(schema_id, dataset.envelope),
        record_full_name(dataset.schema),
        DemoData(seed),
    )
    out = []
    for _ in range(count):
        licence = data.business_licence()
        event = change_event(
            department=DEPARTMENT, dataset=DATASET, op=Op.CREATE, after=licence, system="bench"
        )
        out.append(
            (dataset.key_of(licence).encode(), encoder.encode(with_union_branches(event, name)))
        )
    return out


def _cycled(pool: Events, count: int) -> Iterator[tuple[bytes, bytes]]:
    return itertools.islice(itertools.cycle(pool), count)


def _subscriber_topic(i: int) -> str:
    return f"deliver.bench_{i}.{DATASET}"


WATCHED = _subscriber_topic(0)  # the projection: every event reaches it


def _put_in_force(settings: BusSettings, catalog: Catalog, count: int) -> list[str]:
    """Exactly ``count`` bench grants in force (the ten kinds of tests/benchmarks/grants/ in
    turn, for subscribers bench_0, bench_1, ...); their subscribers' topics."""
    kinds = sorted(GRANTS.glob("bench_*.yaml"), key=lambda p: int(p.stem.split("_")[1]))
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            text = kinds[i % len(kinds)].read_text()
            text = re.sub(r"^grant: bench-\d+-", f"grant: bench-{i}-", text, flags=re.M)
            text = re.sub(r"^subscriber: bench_\d+", f"subscriber: bench_{i}", text, flags=re.M)
            Path(folder, f"bench_{i}.yaml").write_text(text)
        for grant_id in grant_records(settings):
            number = BENCH_GRANT.match(grant_id)
            if number and int(number.group(1)) >= count:
                revoke_grant(settings, grant_id)
        apply_grants(settings, catalog, [Path(folder)])
    topics = [_subscriber_topic(i) for i in range(count)]
    ensure_topics(settings, dict.fromkeys(topics, 3))
    return topics


class EngineRun:
    """What one engine phase measured."""

    def __init__(self, workers: int, grants: int, events: int) -> None:
        self.workers, self.grants, self.events = workers, grants, events
        self.rate = 0.0
        self.latency: tuple[float, float] | None = None
        self.rss: list[tuple[int, int]] = []  # (events done, bytes)
        self.shapes: list[list[Out]] = []

    def rss_at(self, done: int) -> int:
        """The first sample taken with at least ``done`` events done (else the last)."""
        return next((r for n, r in self.rss if n >= done), self.rss[-1][1] if self.rss else 0)


def _percentiles(sent: dict[int, int], written: dict[int, int]) -> tuple[float, float]:
    added = sorted(written[c] - t for c, t in sent.items() if c in written)
    if not added:
        raise RuntimeError("no output record of the latency events was found")
    return statistics.median(added), added[min(len(added) - 1, int(len(added) * 0.99))]


def _engine_phase(
    settings: BusSettings,
    source: str,
    outputs: Sequence[str],
    run: EngineRun,
    events: Events,
    latency: Events | None,
    args: argparse.Namespace,
) -> None:
    """One engine phase (see the module's doc, step 2): fills ``run``."""
    group = f"bench-engine-{uuid.uuid4().hex[:8]}"
    start_group_at(settings, group, end_offsets(settings, [source]))
    print(f"engine, {run.workers} worker(s), {run.grants} grants: starting...", flush=True)
    with EngineWorkers(settings, group, run.workers) as engine:
        engine.wait_joined()
        marks = end_offsets(settings, [*outputs, AUDIT_TOPIC])
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-o", args.profile]
                + [
                    "--nonblocking",
                    "--format",
                    "flamegraph" if args.profile.endswith(".svg") else "raw",
                ]
                + ["--pid", str(engine.pids[0]), "--duration", str(args.profile_seconds)],
                stdout=subprocess.DEVNULL,
            )
        print(f"  {run.events:,} events...", flush=True)
        produce_events(settings, source, _cycled(events, run.events))

        def sample(done: int) -> None:
            run.rss.append((done, engine.rss()))

        times = output_times(settings, WATCHED, marks, run.events, tick=sample)
        sample(len(times))
        if len(times) < run.events:
            raise RuntimeError(f"the engine wrote {len(times)} of {run.events} in time")
        run.rate = len(times) / max((max(times.values()) - min(times.values())) / 1000, 1e-3)
        if profiler is not None:
            profiler.wait()
        if latency is not None:
            marks = end_offsets(settings, [*outputs, AUDIT_TOPIC])
            print(f"  latency: {len(latency):,} events at {args.rate:.0f}/s...", flush=True)
            sent = produce_events(settings, source, latency, args.rate)
            written = output_times(settings, WATCHED, marks, len(sent), timeout=300, among=sent)
            run.latency = _percentiles(sent, written)
            run.shapes = outputs_of(settings, marks, sorted(sent))


def _anchors(
    settings: BusSettings,
    source: str,
    marks: dict[tuple[str, int], int],
    shapes: list[list[Out]],
    latency: Events,
    args: argparse.Namespace,
) -> tuple[float, tuple[float, float], float]:
    """Passthrough events/s and added latency, fan-out events/s (module doc, step 3)."""
    run_id = uuid.uuid4().hex[:6]
    copy_topic = f"bench.passthrough.{run_id}"
    engine_topics = sorted({o.topic for shape in shapes for o in shape})
    partitions = _partition_counts(settings, [source, *engine_topics])
    fan_topics = {t: f"bench.fanout.{run_id}.{i}" for i, t in enumerate(engine_topics)}
    ensure_topics(
        settings,
        {copy_topic: partitions[source]} | {fan_topics[t]: partitions[t] for t in fan_topics},
    )
    end_offsets(settings, [copy_topic, *fan_topics.values()])  # their leaders known
    try:
        print("raw passthrough...", flush=True)
        loop = RawLoop(settings, source, marks, passthrough(copy_topic), args.events)
        loop.start()
        raw_rate = loop.rate()
        loop.drain(settings, marks)  # the later phases' records too: latency without backlog
        out_marks = end_offsets(settings, [copy_topic])
        sent = produce_events(settings, source, latency, args.rate)
        written = output_times(settings, copy_topic, out_marks, len(sent), among=sent)
        raw_latency = _percentiles(sent, written)
        loop.stop.set()
        loop.join(30)

        print("raw fan-out...", flush=True)
        loop = RawLoop(settings, source, marks, fan_out(shapes, fan_topics), args.events)
        loop.start()
        fan_rate = loop.rate()
        loop.stop.set()
        loop.join(60)
    finally:
        delete_topics(settings, [copy_topic, *fan_topics.values()])
    return raw_rate, raw_latency, fan_rate


def _partition_counts(settings: BusSettings, topics: Sequence[str]) -> dict[str, int]:
    ends = end_offsets(settings, topics)
    return {t: sum(1 for topic, _ in ends if topic == t) for t in topics}


def _shape_line(shapes: list[list[Out]]) -> str:
    records = sum(len(s) for s in shapes) / len(shapes)
    size = sum(len(o.value or b"") + len(o.key or b"") for s in shapes for o in s) / len(shapes)
    header_count = sum(len(o.headers) for s in shapes for o in s) / max(
        sum(len(s) for s in shapes), 1
    )
    return f"{records:.1f} records, {size / 1024:.1f} kB, {header_count:.1f} headers/record"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="N, events of each phase")
    parser.add_argument("--latency-events", type=int, default=2_000, help="M")
    parser.add_argument(
        "--rate", type=float, default=250.0, help="events/s of latency phases (below capacity)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="engine phases: worker counts"
    )
    parser.add_argument("--partitions", type=int, default=12, help="of a new source topic")
    parser.add_argument(
        "--scaling", type=int, nargs="*", default=[1, 10, 50], help="grant counts (none: skip)"
    )
    parser.add_argument("--scaling-events", type=int, default=5_000, help="S")
    parser.add_argument(
        "--long",
        action="store_true",
        help="1M events, RSS at 100k and 1M (implies --events 1000000; no scaling)",
    )
    parser.add_argument(
        "--profile", help="py-spy profile of the first worker under load: an .svg, else stacks"
    )
    parser.add_argument("--profile-seconds", type=int, default=20)
    args = parser.parse_args()
    if args.long:
        args.events, args.scaling = 1_000_000, []

    settings = BusSettings()
    os.environ.setdefault("XBUS_PSEUDONYM_KEY", "benchmark-pseudonym-secret")
    catalog = Catalog.load(settings.schemas_dir)
    register_catalog(catalog, registry_client(settings))
    source = catalog.get(DEPARTMENT, DATASET).topic
    ensure_topics(settings, {source: args.partitions})
    set_reference_table(settings, "districts", DISTRICTS)
    outputs = _put_in_force(settings, catalog, 10)

    pool_size = min(args.events, 100_000)
    print(f"generating {pool_size:,} licences...", flush=True)
    pool = _events(settings, catalog, pool_size, seed=1)

    # Engine phases first; the anchors read the same N records after them.
    marks = end_offsets(settings, [source])
    runs = []
    for workers in args.workers:
        run = EngineRun(workers, 10, args.events)
        latency = _events(settings, catalog, args.latency_events, seed=2 + workers)
        _engine_phase(settings, source, outputs, run, pool, latency, args)
        runs.append(run)
    shapes = runs[0].shapes
    raw_rate, raw_latency, fan_rate = _anchors(
        settings, source, marks, shapes, _events(settings, catalog, args.latency_events, 9), args
    )

    scaling = []
    for count in args.scaling:
        topics = _put_in_force(settings, catalog, count)
        run = EngineRun(1, count, args.scaling_events)
        _engine_phase(settings, source, topics, run, pool, None, args)
        scaling.append(run)
    if args.scaling:
        _put_in_force(settings, catalog, 10)

    print(f"\n{args.events:,} events; latency at {args.rate:.0f} events/s")
    for run in runs:
        assert run.latency is not None
        p50, p99 = run.latency
        over = "  (above what it sustains: a backlog)" if args.rate > 0.9 * run.rate else ""
        print(
            f"engine, {run.workers} worker(s), 10 grants:   {run.rate:>9,.0f} events/s   "
            f"added latency p50 {p50:.0f} ms, p99 {p99:.0f} ms{over}"
        )
    print(f"raw fan-out ({_shape_line(shapes)} an event): {fan_rate:>9,.0f} events/s")
    print(
        f"raw consume→produce passthrough:  {raw_rate:>9,.0f} events/s   "
        f"added latency p50 {raw_latency[0]:.0f} ms, p99 {raw_latency[1]:.0f} ms"
    )
    for run in runs:
        print(
            f"ratio engine ({run.workers}w) / fan-out {run.rate / fan_rate:.3f},"
            f" / passthrough {run.rate / raw_rate:.3f}"
        )
    for run in runs:
        early = min(100_000, run.events // 10)
        first, last = run.rss_at(early), run.rss_at(run.events)
        peak = max(r for _, r in run.rss)
        print(
            f"engine RSS ({run.workers}w): {first / MB:.0f} MB at {early:,} events, "
            f"{last / MB:.0f} MB at {run.events:,} ({(last - first) / first:+.1%}), "
            f"peak {peak / MB:.0f} MB"
        )
    for run in scaling:
        print(
            f"grants scaling, 1 worker, {run.grants:>2} grants, {run.events:,} events: "
            f"{run.rate:>9,.0f} events/s"
        )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")
