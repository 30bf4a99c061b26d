"""The bus at a glance, computed from metric samples: what ``xbus status`` shows.

Pure functions only: samples in (parsed from ``/metrics`` pages or from Prometheus' query API
by ``xbus.core.metric_sources``), a ``BusSnapshot`` out. Counters are summed over every
process that reports them (each engine worker and connector counts its own share); rates are
per second, either between two scrapes of the endpoints or Prometheus' ``rate()``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# The series the snapshot reads (defined in xbus.core.metrics; tests check each is exported).
PUBLISHED = "xbus_events_published_total"
REJECTED = "xbus_events_rejected_total"
DELIVERED = "xbus_events_delivered_total"
FILTERED = "xbus_events_filtered_total"
DENIED = "xbus_events_denied_total"
FAILURES = "xbus_connector_failures_total"
RETRIES = "xbus_connector_retries_total"
LAG = "xbus_connector_lag_events"
OLDEST_UNDELIVERED = "xbus_connector_oldest_undelivered_timestamp_seconds"
GRANTS_IN_FORCE = "xbus_grants_in_force"
GRANT_EXPIRY = "xbus_grant_seconds_until_expiry"

COUNTERS = (PUBLISHED, REJECTED, DELIVERED, FILTERED, DENIED, FAILURES, RETRIES)
GAUGES = (LAG, OLDEST_UNDELIVERED, GRANTS_IN_FORCE, GRANT_EXPIRY)
READ = COUNTERS + GAUGES

# The engine counts what it writes to a subscriber's topic as delivered with this connector.
ENGINE_TOPIC = "topic"


@dataclass(frozen=True)
class Sample:
    """One value of one series, and the component that reported it."""

    name: str
    labels: Mapping[str, str]
    value: float
    source: str = ""

    def label(self, name: str) -> str:
        """The value of label ``name``, empty if the series has none."""
        return self.labels.get(name, "")

    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What identifies the series: its component, name and labels."""
        return (self.source, self.name, tuple(sorted(self.labels.items())))


@dataclass(frozen=True)
class Component:
    """A process whose metrics were read (an endpoint, or a Prometheus target), and whether
    it answered."""

    name: str
    address: str
    up: bool
    problem: str = ""


@dataclass(frozen=True)
class Reading:
    """What was read at ``taken_at`` (Unix time): each series' value, each counter's rate per
    second over ``window`` (a phrase: ``4.0 s between two scrapes``, ``rate over 1m``)."""

    taken_at: float
    source: str
    window: str
    components: Sequence[Component]
    values: Sequence[Sample]
    rates: Sequence[Sample]


@dataclass(frozen=True)
class DepartmentActivity:
    """What a department published: per second now, in all, and refused per second."""

    department: str
    published_per_second: float
    published: float
    rejected_per_second: float


@dataclass(frozen=True)
class SubscriberActivity:
    """How one subscriber is served: what the engine wrote to its topics (``routed``), what
    its connectors handed to its targets (``delivered``), what its grants kept back, how far
    behind its connectors are and how long their oldest undelivered event has waited."""

    subscriber: str
    routed_per_second: float = 0.0
    routed: float = 0.0
    delivered_per_second: float = 0.0
    delivered: float = 0.0
    filtered_per_second: float = 0.0
    denied_per_second: float = 0.0
    lag: float | None = None
    failures: float = 0.0
    retries: float = 0.0
    oldest_waiting_seconds: float | None = None


@dataclass(frozen=True)
class GrantExpiry:
    """A grant and the seconds until its ``valid_until`` (negative once expired)."""

    grant: str
    subscriber: str
    dataset: str
    seconds: float


@dataclass(frozen=True)
class GrantsOverview:
    """Grants in force (the engine's count; None when no engine reported), the next one to
    expire, and how many have expired but are still on the grants topic."""

    in_force: int | None
    next_expiry: GrantExpiry | None
    expired: int


@dataclass(frozen=True)
class BusSnapshot:
    """The bus at one moment, as ``xbus status`` shows it."""

    taken_at: float
    source: str
    window: str
    components: Sequence[Component]
    departments: Sequence[DepartmentActivity]
    subscribers: Sequence[SubscriberActivity]
    grants: GrantsOverview

    @property
    def reachable(self) -> bool:
        """Whether at least one component answered."""
        return any(c.up for c in self.components)

    def subscriber(self, name: str) -> SubscriberActivity | None:
        """The row of subscriber ``name``, if any component reported it."""
        return next((s for s in self.subscribers if s.subscriber == name), None)

    def department(self, name: str) -> DepartmentActivity | None:
        """The row of department ``name``, if any publisher reported it."""
        return next((d for d in self.departments if d.department == name), None)


# -- reading samples -------------------------------------------------------------------------


def parse_exposition(text: str, source: str, names: Iterable[str] = READ) -> list[Sample]:
    """The samples of series ``names`` on a ``/metrics`` page (Prometheus text format)."""
    wanted = set(names)
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value), source)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in wanted
    ]


def exported_names(text: str) -> set[str]:
    """Every series name a ``/metrics`` page declares, with the suffixes Prometheus stores:
    ``_total`` for a counter, ``_bucket``, ``_sum`` and ``_count`` for a histogram, also for
    a family that has no sample yet (no labels seen)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def counter_rates(
    before: Sequence[Sample], after: Sequence[Sample], seconds: float
) -> list[Sample]:
    """Per-second increase of each counter series between two scrapes ``seconds`` apart. A
    series first seen in ``after`` started from zero; one that went down was reset (its
    process restarted) and counts from zero again, as Prometheus' ``rate()`` does."""
    if seconds <= 0:
        raise ValueError("two scrapes must be some time apart")
    earlier = {s.key(): s.value for s in before}
    rates = []
    for sample in after:
        if sample.name not in COUNTERS:
            continue
        start = earlier.get(sample.key(), 0.0)
        increase = sample.value - start if sample.value >= start else sample.value
        rates.append(Sample(sample.name, sample.labels, increase / seconds, sample.source))
    return rates


def prometheus_vector(payload: Mapping[str, object], name: str | None = None) -> list[Sample]:
    """The samples of an instant-vector answer of Prometheus' ``/api/v1/query``; ``name``
    for expressions whose result carries no ``__name__`` (``rate(...)``). The component is
    the target's ``instance``."""
    data = payload.get("data")
    if payload.get("status") != "success" or not isinstance(data, Mapping):
        raise ValueError(f"not a successful Prometheus answer: {payload.get('error', payload)}")
    if data.get("resultType") != "vector":
        raise ValueError(f"expected an instant vector, got {data.get('resultType')}")
    samples = []
    for series in data.get("result", []):
        labels = dict(series["metric"])
        series_name = labels.pop("__name__", name or "")
        samples.append(
            Sample(series_name, labels, float(series["value"][1]), labels.get("instance", ""))
        )
    return samples


def prometheus_targets(up: Sequence[Sample]) -> list[Component]:
    """Components from Prometheus' ``up`` series: each target by its job and instance."""
    return sorted(
        (Component(s.label("job") or s.source, s.label("instance"), s.value == 1.0) for s in up),
        key=lambda c: (c.name, c.address),
    )


# -- the snapshot ----------------------------------------------------------------------------


def _subscribers_of(sample: Sample) -> list[str]:
    # A connector that serves several subscribers counts its failures and retries under all
    # of them joined with "+": each of them is concerned.
    return [s for s in sample.label("subscriber").split("+") if s]


def _sum_by(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for s in samples:
        if s.name == name and not math.isnan(s.value):
            totals[s.label(label)] += s.value
    return totals


def _departments(reading: Reading) -> list[DepartmentActivity]:
    rate = _sum_by(reading.rates, PUBLISHED, "department")
    total = _sum_by(reading.values, PUBLISHED, "department")
    rejected = _sum_by(reading.rates, REJECTED, "department")
    names = sorted(set(rate) | set(total) | set(rejected) - {""})
    return [
        DepartmentActivity(d, rate.get(d, 0.0), total.get(d, 0.0), rejected.get(d, 0.0))
        for d in names
        if d
    ]


def _subscribers(reading: Reading) -> list[SubscriberActivity]:
    per_second: dict[tuple[str, str], float] = defaultdict(float)
    counted: dict[tuple[str, str], float] = defaultdict(float)
    lag: dict[str, float] = {}
    oldest: dict[str, float] = {}
    names: set[str] = set()
    for s in reading.rates:
        for who in _subscribers_of(s):
            names.add(who)
            per_second[(who, _KINDS.get((s.name, s.label("connector") == ENGINE_TOPIC), ""))] += (
                s.value
            )
    for s in reading.values:
        if s.name == GRANT_EXPIRY:
            continue
        for who in _subscribers_of(s):
            names.add(who)
            if s.name == LAG:
                lag[who] = lag.get(who, 0.0) + s.value
            elif s.name == OLDEST_UNDELIVERED:
                if s.value > 0:
                    oldest[who] = min(s.value, oldest.get(who, s.value))
            else:
                counted[(who, _KINDS.get((s.name, s.label("connector") == ENGINE_TOPIC), ""))] += (
                    s.value
                )
    return [
        SubscriberActivity(
            who,
            routed_per_second=per_second[(who, "routed")],
            routed=counted[(who, "routed")],
            delivered_per_second=per_second[(who, "delivered")],
            delivered=counted[(who, "delivered")],
            filtered_per_second=per_second[(who, "filtered")],
            denied_per_second=per_second[(who, "denied")],
            lag=lag.get(who),
            failures=counted[(who, "failures")],
            retries=counted[(who, "retries")],
            oldest_waiting_seconds=(
                max(0.0, reading.taken_at - oldest[who]) if who in oldest else None
            ),
        )
        for who in sorted(names)
    ]


# (series, written by the engine to the subscriber's topic) -> what it counts for a subscriber
_KINDS = {
    (DELIVERED, True): "routed",
    (DELIVERED, False): "delivered",
    (FILTERED, False): "filtered",
    (DENIED, False): "denied",
    (FAILURES, False): "failures",
    (RETRIES, False): "retries",
}


def _grants(reading: Reading) -> GrantsOverview:
    # Every process exports the unlabelled gauge (0 where no engine runs): the engines'
    # count is the largest.
    counts = [s.value for s in reading.values if s.name == GRANTS_IN_FORCE]
    expiries: dict[tuple[str, str, str], float] = {}
    for s in reading.values:
        if s.name == GRANT_EXPIRY:
            grant = (s.label("grant"), s.label("subscriber"), s.label("dataset"))
            expiries[grant] = min(s.value, expiries.get(grant, s.value))
    coming = sorted((seconds, grant) for grant, seconds in expiries.items() if seconds >= 0)
    next_expiry = GrantExpiry(*coming[0][1], coming[0][0]) if coming else None
    return GrantsOverview(
        in_force=int(max(counts)) if counts else None,
        next_expiry=next_expiry,
        expired=sum(1 for seconds in expiries.values() if seconds < 0),
    )


def snapshot(reading: Reading) -> BusSnapshot:
    """The bus as ``reading`` shows it: per department, per subscriber, the grants and the
    components' health."""
    return BusSnapshot(
        taken_at=reading.taken_at,
        source=reading.source,
        window=reading.window,
        components=list(reading.components),
        departments=_departments(reading),
        subscribers=_subscribers(reading),
        grants=_grants(reading),
    )
