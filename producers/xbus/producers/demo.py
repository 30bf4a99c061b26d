"""The demo departments of Shanghai: the market regulation bureau issues business licences
(and now and then suspends one), the start of the one-stop enterprise start-up that the
grants carry on to the public security bureau, the tax bureau, the social security bureau,
the district's service centre and the open-data portal. Alongside, the health commission
lists its clinics and records vaccinations, human resources and social security collects
contributions, and the 12345 citizen hotline takes requests and now and then resolves one.
(Civil affairs keeps its marriage registrations in its own database: change data capture
brings them onto the bus, ``xbus.producers.cdc.demo``.)"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.settings import BusSettings
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher

LICENCES = ("market_regulation", "business_licence")
HOTLINE = ("citizen_hotline", "service_request")
# (department, dataset, publish on every n-th tick)
ALONGSIDE = (
    ("health", "vaccination_record", 2),
    (*HOTLINE, 2),
    ("human_resources", "insurance_contribution", 3),
)
CLINICS = 10
# Hotline requests still open that the demo may resolve later, at most this many.
OPEN_REQUESTS = 20


def as_department(settings: BusSettings, department: str) -> BusSettings:
    """``settings`` with the department's own Kafka user, where ``xbus provision`` made one
    (its password in ``<secrets>/kafka/department.<name>.password``): on a secured bus each
    demo department publishes as itself, allowed its own topics only."""
    password = settings.secrets_dir / "kafka" / f"department.{department}.password"
    if not settings.sasl_mechanism or not password.exists():
        return settings
    return settings.model_copy(
        update={
            "sasl_username": f"department.{department}",
            "sasl_password": None,
            "sasl_password_file": password,
        }
    )


def run_demo(
    settings: BusSettings,
    stop: threading.Event,
    *,
    rate: float = 1.0,
    count: int = 0,
    seed: int | None = None,
) -> int:
    """Publish a newly issued licence ``rate`` times a second, with the other departments'
    events alongside, until ``stop`` is set or ``count`` licences (0: no limit) were
    published; return how many licences Kafka acknowledged."""
    catalog = Catalog.load(settings.schemas_dir)
    data = DemoData(seed)
    chance = random.Random(seed)
    departments = {LICENCES[0], *(d for d, _, _ in ALONGSIDE)}
    publishers = {
        d: Publisher(
            d,
            system=f"{d}-demo",
            settings=as_department(settings, d),
            catalog=catalog,
            origin="demo",
        )
        for d in departments
    }
    issued: list[dict[str, Any]] = []
    open_requests: list[dict[str, Any]] = []
    licences = 0
    try:
        health = publishers["health"]
        for _ in range(CLINICS):
            health.publish("clinic", Op.SNAPSHOT, after=data.clinic())
        health.flush()
        tick = 0
        while not stop.is_set() and (count == 0 or licences < count):
            started = time.monotonic()
            tick += 1
            bureau = publishers[LICENCES[0]]
            licence = data.business_licence()
            receipt = bureau.publish_sync(LICENCES[1], Op.CREATE, after=licence)
            issued.append(licence)
            licences += 1
            print(
                f"market_regulation published licence {licence['credit_code']} "
                f"{licence['name']} (event {receipt.event_id})",
                flush=True,
            )
            if len(issued) > 5 and chance.random() < 0.1:
                before = issued.pop(chance.randrange(len(issued)))
                after = {**before, "status": "SUSPENDED"}
                bureau.publish_sync(LICENCES[1], Op.UPDATE, before=before, after=after)
                print(f"market_regulation suspended licence {before['credit_code']}", flush=True)
            for department, dataset, every in ALONGSIDE:
                if tick % every == 0:
                    record = data.record(catalog.get(department, dataset))
                    receipt = publishers[department].publish_sync(dataset, Op.CREATE, after=record)
                    if (department, dataset) == HOTLINE:
                        open_requests = [*open_requests, record][-OPEN_REQUESTS:]
                        print(
                            f"citizen_hotline took request {record['request_id']} "
                            f"{record['category']} (event {receipt.event_id})",
                            flush=True,
                        )
            if len(open_requests) > 3 and chance.random() < 0.2:
                before = open_requests.pop(chance.randrange(len(open_requests)))
                after = {**before, "status": "RESOLVED"}
                publishers[HOTLINE[0]].publish_sync(
                    HOTLINE[1], Op.UPDATE, before=before, after=after
                )
                print(f"citizen_hotline resolved request {before['request_id']}", flush=True)
            stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - started)))
    finally:
        for publisher in publishers.values():
            publisher.close()
    return licences
