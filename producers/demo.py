"""The demo department: the market regulation bureau issuing business licences."""

from __future__ import annotations

import threading
import time

from producers.demodata import DemoData
from producers.publisher import Publisher
from xbus.envelope import Op
from xbus.settings import BusSettings

DEPARTMENT = "market_regulation"
DATASET = "business_licence"


def run_demo(
    settings: BusSettings,
    stop: threading.Event,
    *,
    rate: float = 1.0,
    count: int = 0,
    seed: int | None = None,
) -> int:
    """Publish a newly issued licence ``rate`` times a second until ``stop`` is set or
    ``count`` (0: no limit) were published; return how many Kafka acknowledged."""
    data = DemoData(seed)
    published = 0
    with Publisher(
        DEPARTMENT, system="one-stop-service-centre", settings=settings, origin="demo"
    ) as publisher:
        while not stop.is_set() and (count == 0 or published < count):
            started = time.monotonic()
            licence = data.business_licence()
            event_id = publisher.publish(DATASET, Op.CREATE, after=licence)
            publisher.flush()
            published += 1
            print(
                f"published licence {licence['credit_code']} {licence['name']} (event {event_id})",
                flush=True,
            )
            stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - started)))
    return published
