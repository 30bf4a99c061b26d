"""Where ``xbus status`` reads the bus's metrics: straight from the components' ``/metrics``
endpoints (rates from two scrapes some seconds apart), or from Prometheus' HTTP query API
(rates from ``rate()``). Both give a ``Reading`` for ``xbus.core.bus_status.snapshot``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from xbus.core.bus_status import (
    COUNTERS,
    READ,
    Component,
    Reading,
    Sample,
    counter_rates,
    parse_exposition,
    prometheus_targets,
    prometheus_vector,
)
from xbus.core.errors import XbusError


class MetricsUnreachable(XbusError):
    """Nothing answered where the metrics were to be read."""

    reason = "metrics_unreachable"
    retriable = True


class BusReader(Protocol):
    """Reads the bus's metrics once more each time it is asked."""

    def read(self) -> Reading:
        """The samples now, with the counters' rates."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """A component's ``/metrics`` URL and the name it is shown by."""

    name: str
    url: str

    @classmethod
    def parse(cls, given: str) -> Endpoint:
        """``NAME=URL`` or a bare URL (then named by it); ``host:port`` gets ``http://`` and
        a URL without a path gets ``/metrics``."""
        name, _, url = given.partition("=") if "=" in given.split("://")[0] else ("", "", given)
        if "://" not in url:
            url = f"http://{url}"
        if httpx.URL(url).path in ("", "/"):
            url = url.rstrip("/") + "/metrics"
        return cls(name or url, url)


@dataclass(frozen=True)
class _Scrape:
    at: float
    components: list[Component]
    samples: list[Sample]


class EndpointsReader:
    """Scrapes each endpoint; a counter's rate is its increase since the previous scrape
    (the first read scrapes twice, ``sample_seconds`` apart)."""

    def __init__(
        self, endpoints: Sequence[Endpoint], sample_seconds: float = 3.0, timeout: float = 2.0
    ) -> None:
        self.endpoints = list(endpoints)
        self.sample_seconds = sample_seconds
        self._client = httpx.Client(timeout=timeout)
        self._last: _Scrape | None = None

    def _scrape(self) -> _Scrape:
        components, samples = [], []
        at = time.time()
        for endpoint in self.endpoints:
            try:
                response = self._client.get(endpoint.url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
                components.append(Component(endpoint.name, endpoint.url, False, problem))
                continue
            components.append(Component(endpoint.name, endpoint.url, True))
            samples.extend(parse_exposition(response.text, endpoint.name))
        return _Scrape(at, components, samples)

    def read(self) -> Reading:
        """Scrape every endpoint; an endpoint that does not answer is a component down."""
        before = self._last
        if before is None:
            before = self._scrape()
            if any(c.up for c in before.components):
                time.sleep(self.sample_seconds)
        after = self._last = self._scrape()
        seconds = max(after.at - before.at, 1e-3)
        return Reading(
            taken_at=after.at,
            source=f"{len(self.endpoints)} metrics endpoint(s)",
            window=f"rates over {seconds:.1f} s between two scrapes",
            components=after.components,
            values=after.samples,
            rates=counter_rates(before.samples, after.samples, seconds),
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


class PrometheusReader:
    """Asks Prometheus (``/api/v1/query``) for every series the snapshot reads, each
    counter's ``rate()`` over ``window``, and ``up`` of every target."""

    def __init__(self, url: str, window: str = "1m", timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.window = window
        self._client = httpx.Client(timeout=timeout)

    def _query(self, expression: str, name: str | None = None) -> list[Sample]:
        where = f"{self.url}/api/v1/query"
        try:
            response = self._client.get(where, params={"query": expression})
        except httpx.HTTPError as exc:
            raise MetricsUnreachable(
                f"Prometheus at {self.url} did not answer: {exc} (is it running? "
                "--prometheus or XBUS_PROMETHEUS_URL)"
            ) from exc
        try:
            return prometheus_vector(response.json(), name)
        except ValueError as exc:
            raise MetricsUnreachable(
                f"Prometheus at {where} answered {response.status_code} to {expression!r}: {exc}"
            ) from exc

    def read(self) -> Reading:
        """Query the series, the rates and the targets' health at one instant."""
        at = time.time()
        values = [s for name in READ for s in self._query(name)]
        rates = [s for name in COUNTERS for s in self._query(f"rate({name}[{self.window}])", name)]
        return Reading(
            taken_at=at,
            source=f"Prometheus at {self.url}",
            window=f"rates over {self.window}",
            components=prometheus_targets(self._query("up")),
            values=values,
            rates=rates,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()
