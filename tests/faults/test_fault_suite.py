"""The fault suite: a department publishes creates, updates and deletes over a set of business
licences through the Publisher SDK and the ingest gateway, while Kafka nodes, engine workers,
connectors, PostgreSQL, a webhook target and the registry fail one after another and then
together. At the end, against what Kafka acknowledged to the publishers:

- the source topic holds every acknowledged event, none twice (idempotent producers);
- a subscriber's PostgreSQL table equals the expected final state: 0 lost, 0 extra, 0 stale;
- a subscriber's webhook got every event at least once, once in effect by idempotency key,
  and each key's events in order;

and it prints the at-least-once repeats on the ``deliver.*`` topics and, per fault, how long
deliveries stalled and how long the backlog took to come back.

Short form in ``make test``; ``make faults`` (``XBUS_FAULTS_FULL=1``) runs 100,000 events and
every fault.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.conftest import Bus
from tests.faults.conftest import FIGURES, Cluster
from tests.faults.stream import Sent, Stream, licence_grant, through_gateway, through_sdk
from tests.producers.test_gateway import start_gateway
from tests.support.components import wait_for
from tests.support.webhook_receiver import Receiver, webhook_receiver
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants

FULL = os.environ.get("XBUS_FAULTS_FULL") == "1"
EVENTS = 100_000 if FULL else 4_000
KEYS = 4_000 if FULL else 400
RATE = 250.0 if FULL else 80.0  # events/s, both publishers together
PAUSE = 15.0 if FULL else 10.0  # seconds of steady flow before each fault
LICENCES = "gov.market_regulation.business_licence"
SECRET = b"fault-suite-webhook-secret-of-at-least-32-bytes"


class Proc:
    """A component (``xbus run ...``) the suite kills with SIGKILL and starts again, as a
    supervisor (systemd, Kubernetes) would; its starts append to one log."""

    def __init__(self, bus: Bus, log: Path, args: list[str], env: dict[str, str]) -> None:
        self.bus, self.log, self.args, self.env = bus, log, args, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "xbus.cli", "run", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.bus.env(), **self.env},
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Fault:
    name: str
    inject: Callable[[], None]
    repair: Callable[[], None]
    held: float  # seconds between inject and repair


@dataclass
class Measured:
    """One fault, as a sink saw it."""

    name: str
    started: float
    repaired: float
    stall: float = 0.0  # the longest time no event reached the sink
    recovery: float = float("nan")  # until the sink's backlog was back to its level before
    lowest_rate: float = float("nan")  # events/s reaching the sink, lowest 5 s window


@dataclass
class Watch:
    """Samples, twice a second, how many acknowledged events there are and how many a sink
    has taken (``taken``: the webhook's distinct events, the table's applied offsets)."""

    taken: Callable[[], int]
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, acked, taken)

    def run(self, acked: Callable[[], int], stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.samples.append((time.monotonic(), acked(), self.taken()))

    def measure(self, name: str, started: float, repaired: float, until: float) -> Measured:
        """The fault from ``started`` to ``repaired`` as this sink saw it, up to ``until``
        (the next fault): its backlog (acknowledged, not yet taken) is back when within
        twice its median of the 10 s before the fault, or one second of publishing above it."""
        m = Measured(name, started, repaired)
        before = [a - h for t, a, h in self.samples if started - 10 <= t < started]
        normal = statistics.median(before) if before else 0
        after = [(t, a, h) for t, a, h in self.samples if started <= t <= until]
        if not after:
            return m
        threshold = max(2 * normal, normal + RATE)
        back = next((t for t, a, h in after if t >= repaired and a - h <= threshold), None)
        if back is not None:
            m.recovery = back - started
        end = back if back is not None else after[-1][0]
        window = [(t, h) for t, _, h in after if t <= end]
        last_change, previous = started, window[0][1]
        for t, taken in window[1:]:
            if taken > previous:
                m.stall = max(m.stall, t - last_change)
                last_change, previous = t, taken
        m.stall = max(m.stall, end - last_change)
        rates = [
            (h2 - h1) / (t2 - t1) for (t1, h1), (t2, h2) in zip(window, window[10:], strict=False)
        ]
        if rates:
            m.lowest_rate = min(rates)
        return m


def _source_counts(bus: Bus, ids: set[str]) -> Counter[str]:
    """How often each of ``ids`` is on the source topic (by the event-id header)."""
    return _count_ids(bus, LICENCES, ids)


def _count_ids(bus: Bus, topic: str, ids: set[str] | None) -> Counter[str]:
    consumer = Consumer(
        bus.settings.consumer_config(f"count-{uuid.uuid4()}", **{"enable.auto.commit": False})
    )
    low_high = {}
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    for p in metadata.partitions:
        low_high[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
    consumer.assign([TopicPartition(topic, p, lo) for p, (lo, _) in low_high.items()])
    left = {p for p, (lo, hi) in low_high.items() if hi > lo}
    counts: Counter[str] = Counter()
    try:
        while left:
            for message in consumer.consume(1000, timeout=5):
                if message.error():
                    continue
                event_id = _event_id(message.value() or b"")
                if ids is None or event_id in ids:
                    counts[event_id] += 1
                if (message.offset() or 0) + 1 >= low_high[message.partition() or 0][1]:
                    left.discard(message.partition() or 0)
    finally:
        consumer.close()
    return counts


def _event_id(value: bytes) -> str:
    """The event id of an envelope in the wire format: its first field, a UUID string (length
    36, zigzag 72), right after the 5 bytes of magic byte and schema id."""
    return value[6:42].decode() if len(value) > 42 and value[5] == 72 else ""


def _applied(dsn: str, subscriber: str) -> int:
    """How many of its topic's records the PostgreSQL sink has applied (its positions)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(
                f'SELECT coalesce(sum(next_offset), 0) FROM "{subscriber}"._xbus_positions'
            ).fetchone()
    except psycopg.Error:  # not made yet, or the server is down (a fault)
        return 0
    return int(row[0]) if row else 0


def _table(dsn: str, subscriber: str, keys: set[str]) -> dict[str, str]:
    """The subscriber's table, the rows of ``keys`` (the suite's licences: the topic also
    holds what earlier tests published, which the suite's grant delivers too)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT _xbus_key, name FROM "{subscriber}".business_licence')
        return {key: name for key, name in rows.fetchall() if key in keys}


def _expected(acknowledged: list[Sent]) -> dict[str, str]:
    """Each key's final state: the name of its newest change, unless that was a delete."""
    newest: dict[str, Sent] = {}
    for sent in acknowledged:
        if sent.key not in newest or sent.ts_ms > newest[sent.key].ts_ms:
            newest[sent.key] = sent
    return {k: s.name for k, s in newest.items() if s.op is not Op.DELETE and s.name}


class _Background:
    """``target(stop)`` in a thread; ``finish`` stops it, waits, and raises what it raised."""

    def __init__(self, target: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self._errors: list[BaseException] = []

        def run() -> None:
            try:
                target(self.stop)
            except BaseException as exc:  # raised again by finish
                self._errors.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(120)
        if self._errors:
            raise self._errors[0]


@pytest.mark.timeout(EVENTS / RATE * 3 + 1200)
def test_nothing_acknowledged_is_lost_or_applied_twice_through_every_fault(
    cluster: Cluster, registered: Bus, postgres_dsn: str, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    table_subscriber, hook_subscriber = f"fpg_{tag}", f"fhook_{tag}"
    catalog = Catalog.load(bus.settings.schemas_dir)
    apply_grants(
        bus.settings,
        catalog,
        [
            licence_grant(tmp_path, table_subscriber, "fault suite"),
            licence_grant(tmp_path, hook_subscriber, "fault suite"),
        ],
    )
    data = DemoData(seed=int(tag, 16) % 1000)
    licences = [data.business_licence() for _ in range(KEYS)]
    ts_base = int(time.time() * 1000)
    sdk_stream = Stream(licences[: KEYS // 2], seed=1, ts_base=ts_base)
    gateway_stream = Stream(licences[KEYS // 2 :], seed=2, ts_base=ts_base)
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    group = f"faults-{tag}"

    def proc(name: str, *args: str) -> Proc:
        return Proc(bus, tmp_path / f"{name}.log", list(args), {})

    engines = [
        proc(f"engine-{n}", "engine", "--app-id", group, "--metrics-port", "0") for n in (1, 2)
    ]
    table = proc(
        "postgres-connector",
        *("connector", "postgres", "--subscriber", table_subscriber),
        *("--dsn", postgres_dsn, "--metrics-port", "0"),
    )
    faults_seen: list[tuple[str, float, float]] = []

    with ExitStack() as stack, webhook_receiver(SECRET) as receiver:
        hook = proc(
            "webhook-connector",
            *("connector", "webhook", "--subscriber", hook_subscriber, "--url", receiver.url),
            *("--secret-file", str(secret_file), "--metrics-port", "0"),
        )
        everything = [*engines, table, hook]
        for p in everything:
            p.start()
            stack.callback(p.stop)
        gateway = stack.enter_context(contextmanager(start_gateway)(bus, tmp_path, "gateway", None))
        publisher = stack.enter_context(
            Publisher("market_regulation", system="faults", settings=bus.settings)
        )

        def acked() -> int:
            return sdk_stream.count + gateway_stream.count

        def hooked() -> int:
            with receiver.lock:
                return len(receiver.processed)

        watches = {
            "webhook": Watch(hooked),
            "table": Watch(lambda: _applied(postgres_dsn, table_subscriber)),
        }
        for watch in watches.values():
            stack.callback(_Background(partial(watch.run, acked)).finish)
        # The publishers go on until every fault is over and at least EVENTS are out.
        publishers = [
            _Background(lambda stop: sdk_stream.run(through_sdk(publisher), 10**9, RATE / 2, stop)),
            _Background(
                lambda stop: gateway_stream.run(
                    through_gateway(gateway.url, gateway.other_key), 10**9, RATE / 2, stop
                )
            ),
        ]
        wait_for(lambda: hooked() > 50, 120, "the first deliveries")

        for fault in _faults(cluster, engines, table, receiver):
            time.sleep(PAUSE)
            started = time.monotonic()
            print(f"fault: {fault.name}", flush=True)
            fault.inject()
            time.sleep(fault.held)
            fault.repair()
            faults_seen.append((fault.name, started, time.monotonic()))
            assert not any(p.done for p in publishers), "a publisher stopped"
            # Each fault is measured alone: the next waits until both sinks have what was
            # acknowledged by the time this one was repaired.
            _settles(partial(_caught_up, watches, acked()), 300)
        wait_for(lambda: acked() >= EVENTS, EVENTS / RATE * 3 + 300, f"{EVENTS} events published")
        time.sleep(10)
        for publishing in publishers:
            publishing.finish()
        acknowledged = [*sdk_stream.acknowledged, *gateway_stream.acknowledged]
        sent_ids = {s.event_id for s in acknowledged}
        # Waited for, then judged below with what is missing named.
        _settles(lambda: sent_ids <= receiver.processed.keys(), 300)
        expected = _expected(acknowledged)
        ours = {str(licence["credit_code"]) for licence in licences}
        _settles(lambda: _table(postgres_dsn, table_subscriber, ours) == expected, 120)
        stalled = [" ".join(p.args[:2]) for p in everything if not p.running]
        time.sleep(2)
        ends = [started for _, started, _ in faults_seen[1:]] + [time.monotonic()]
        results = {
            sink: [w.measure(*seen, until) for seen, until in zip(faults_seen, ends, strict=True)]
            for sink, w in watches.items()
        }
        _write_series(tmp_path / "series.csv", watches, faults_seen)

    got = _table(postgres_dsn, table_subscriber, ours)
    lost = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    stale = {k for k in expected.keys() & got.keys() if got[k] != expected[k]}
    source = _source_counts(bus, sent_ids)
    retried_ids = {
        s.event_id
        for stream in (sdk_stream, gateway_stream)
        for s in stream.acknowledged
        if s.key in stream.retried
    }
    missing_at_source = sent_ids - source.keys()
    twice_at_source = {i for i, n in source.items() if n > 1} - retried_ids
    out_of_order = _out_of_order(acknowledged, receiver, retried_ids)
    repeats = {
        s: sum(n - 1 for n in _count_ids(bus, f"deliver.{s}.business_licence", None).values())
        for s in (table_subscriber, hook_subscriber)
    }
    _report(results, acknowledged, receiver, repeats, sdk_stream, gateway_stream)

    not_hooked = sent_ids - receiver.processed.keys()
    assert not stalled, f"components that stopped by themselves: {stalled}"
    assert not not_hooked, f"{len(not_hooked)} acknowledged events never reached the webhook"
    assert not missing_at_source, f"{len(missing_at_source)} acknowledged events not on {LICENCES}"
    assert not twice_at_source, f"{len(twice_at_source)} events twice on {LICENCES}"
    assert (len(lost), len(extra), len(stale)) == (0, 0, 0), (
        f"table: {len(lost)} lost, {len(extra)} extra, {len(stale)} stale rows, e.g. "
        + "; ".join(
            f"{k}: {got.get(k)!r} for {expected.get(k)!r}" for k in [*lost, *extra, *stale][:5]
        )
    )
    assert not out_of_order, f"{len(out_of_order)} keys whose events arrived out of order"


def _caught_up(watches: dict[str, Watch], due: int) -> bool:
    """Whether every sink has taken ``due`` events."""
    return min(w.taken() for w in watches.values()) >= due


def _settles(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``condition``; whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def _write_series(
    path: Path, watches: dict[str, Watch], faults: list[tuple[str, float, float]]
) -> None:
    """The samples as CSV (seconds from the first, acknowledged, taken per sink, the fault
    under way), to plot or read when a figure looks wrong."""
    sinks = list(watches)
    rows = zip(*(w.samples for w in watches.values()), strict=False)
    start = next(iter(watches.values())).samples[0][0]
    lines = ["t,acknowledged," + ",".join(sinks) + ",fault"]
    for row in rows:
        t = row[0][0]
        fault = next((name for name, a, b in faults if a <= t <= b), "")
        taken = ",".join(str(sample[2]) for sample in row)
        lines.append(f"{t - start:.1f},{row[0][1]},{taken},{fault}")
    path.write_text("\n".join(lines) + "\n")
    print(f"series: {path}")


def _out_of_order(acknowledged: list[Sent], receiver: Receiver, retried_ids: set[str]) -> set[str]:
    """Keys whose events first reached the webhook in another order than they were
    published (events sent again after a refusal left out: a retry comes after newer ones;
    events that never arrived are reported as missing, not here)."""
    position = {i: n for n, i in enumerate(receiver.processed)}
    by_key: dict[str, list[Sent]] = {}
    for s in sorted(acknowledged, key=lambda s: s.ts_ms):
        if s.event_id not in retried_ids and s.event_id in position:
            by_key.setdefault(s.key, []).append(s)
    return {
        key
        for key, events in by_key.items()
        if [position[s.event_id] for s in events] != sorted(position[s.event_id] for s in events)
    }


def _report(
    results: dict[str, list[Measured]],
    acknowledged: list[Sent],
    receiver: Receiver,
    repeats: dict[str, int],
    *streams: Stream,
) -> None:
    span = max(s.at for s in acknowledged) - min(s.at for s in acknowledged)
    rate = len(acknowledged) / span
    lines = [
        f"{len(acknowledged):,} events acknowledged in {span:.0f}s ({rate:.0f}/s)",
        f"publisher refusals retried: SDK {streams[0].refusals}, gateway {streams[1].refusals}; "
        f"webhook requests failed {receiver.failed_requests}, "
        f"events received more than once {sum(n - 1 for n in receiver.arrivals.values())}",
        "at-least-once repeats on deliver.*: " + ", ".join(f"{s} {n}" for s, n in repeats.items()),
    ]
    sinks = list(results)
    lines.append(
        f"{'fault':<58}"
        + "".join(f"{sink + ': stall / back after / lowest 5 s':>40}" for sink in sinks)
    )
    for row in zip(*results.values(), strict=True):
        lines.append(
            f"{row[0].name:<58}"
            + "".join(
                f"{m.stall:>17.1f} s {m.recovery:>8.1f} s {m.lowest_rate:>7.0f}/s" for m in row
            )
        )
    # Printed at the end of the run, passed or not (tests/faults/conftest.py).
    FIGURES.extend(lines)


def _faults(cluster: Cluster, engines: list[Proc], table: Proc, receiver: Receiver) -> list[Fault]:
    def kill_busiest() -> Fault:
        victim: list[int] = []

        def inject() -> None:
            victim.append(cluster.busiest(LICENCES))
            cluster.kill(victim[0])

        return Fault(
            "kill -9 the node leading most partitions", inject, lambda: cluster.start(victim[0]), 10
        )

    def webhook_down(held: float) -> Fault:
        def inject() -> None:
            receiver.fail_with = 503

        def repair() -> None:
            receiver.fail_with = None

        return Fault(f"webhook target down {held:.0f}s", inject, repair, held)

    faults = [
        kill_busiest(),
        Fault("kill -9 one of two engine workers", engines[0].kill, engines[0].start, 5),
        Fault("kill -9 the PostgreSQL connector", table.kill, table.start, 5),
        webhook_down(30 if FULL else 10),
    ]
    if not FULL:
        return faults

    def rolling_restart() -> None:
        for node in sorted(cluster.stack.kafka.nodes):
            cluster.stop(node)
            cluster.start(node)
            cluster.wait_in_sync()

    postgres = cluster.stack.postgres
    registry = cluster.stack.registry
    faults += [
        Fault("rolling restart of every node", rolling_restart, lambda: None, 0),
        Fault("restart PostgreSQL", postgres.stop, postgres.start, 5),
        Fault("registry cut", registry.stop, registry.start, 30),
    ]

    def together_inject() -> None:
        engines[1].kill()
        table.kill()
        receiver.fail_with = 503

    def together_repair() -> None:
        engines[1].start()
        table.start()
        receiver.fail_with = None

    faults.append(
        Fault(
            "together: an engine worker, the PostgreSQL connector, the webhook",
            together_inject,
            together_repair,
            20,
        )
    )
    broker = kill_busiest()

    def node_and_worker_inject() -> None:
        broker.inject()
        engines[0].kill()

    def node_and_worker_repair() -> None:
        broker.repair()
        engines[0].start()

    faults.append(
        Fault(
            "together: a node and an engine worker",
            node_and_worker_inject,
            node_and_worker_repair,
            15,
        )
    )
    return faults
