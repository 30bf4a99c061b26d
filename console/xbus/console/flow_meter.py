"""The live flow of one grant, from the bus's metrics (Prometheus, or the components'
``/metrics`` endpoints): what the engine wrote to the subscriber's topic for the dataset,
what its connectors delivered, what the grant filtered out or denied, how far behind the
connectors are, their failures, and when a delivery last happened."""

from __future__ import annotations

import time
from dataclasses import dataclass

from xbus.core.bus_status import (
    DELIVERED,
    DENIED,
    ENGINE_TOPIC,
    FAILURES,
    FILTERED,
    LAG,
    OLDEST_UNDELIVERED,
    Reading,
    Sample,
)
from xbus.core.topics import delivery_topic


@dataclass(frozen=True)
class GrantFlow:
    """One grant's flow at one reading; totals since the components started."""

    routed: float
    delivered: float
    delivered_per_second: float
    filtered: float
    filtered_per_second: float
    denied: float
    denied_per_second: float
    lag: float | None
    failures: float
    oldest_waiting_seconds: float | None
    components_up: int
    components: int
    window: str
    last_delivery: float | None = None  # Unix time


def _sum(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.label(k) == v for k, v in labels.items())
    )


def grant_flow(
    reading: Reading, subscriber: str, dataset: str, last_delivery: float | None = None
) -> GrantFlow:
    """The flow of ``subscriber``'s grant on ``dataset`` (``department.dataset``)."""
    name = dataset.split(".", 1)[-1]
    values, rates = list(reading.values), list(reading.rates)

    def delivered(samples: list[Sample]) -> float:
        # What its connectors delivered; the engine's writes to the topic count apart.
        return sum(
            s.value
            for s in samples
            if s.name == DELIVERED
            and s.label("subscriber") == subscriber
            and s.label("dataset") == name
            and s.label("connector") != ENGINE_TOPIC
        )

    topic = delivery_topic(subscriber, name)
    lags = [
        s.value
        for s in values
        if s.name == LAG and s.label("subscriber") == subscriber and s.label("topic") == topic
    ]
    oldest = [
        s.value
        for s in values
        if s.name == OLDEST_UNDELIVERED and s.label("subscriber") == subscriber and s.value > 0
    ]
    return GrantFlow(
        routed=_sum(values, DELIVERED, subscriber=subscriber, dataset=name, connector=ENGINE_TOPIC),
        delivered=delivered(values),
        delivered_per_second=delivered(rates),
        filtered=_sum(values, FILTERED, subscriber=subscriber, dataset=name),
        filtered_per_second=_sum(rates, FILTERED, subscriber=subscriber, dataset=name),
        denied=_sum(values, DENIED, subscriber=subscriber, dataset=name),
        denied_per_second=_sum(rates, DENIED, subscriber=subscriber, dataset=name),
        lag=sum(lags) if lags else None,
        failures=_sum(values, FAILURES, subscriber=subscriber),
        oldest_waiting_seconds=max(0.0, reading.taken_at - min(oldest)) if oldest else None,
        components_up=sum(1 for c in reading.components if c.up),
        components=len(reading.components),
        window=reading.window,
        last_delivery=last_delivery,
    )


class DeliveryClock:
    """Remembers when a grant's delivered count last grew, between readings."""

    def __init__(self) -> None:
        self._count: float | None = None
        self.last: float | None = None

    def see(self, delivered: float, at: float | None = None) -> float | None:
        if self._count is not None and delivered > self._count:
            self.last = at or time.time()
        self._count = delivered
        return self.last
