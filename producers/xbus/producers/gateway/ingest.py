"""Publishing what the gateway admitted: every event checked first, a batch with a bad event
refused whole unless the caller asked for partial acceptance, and an answer only once Kafka
acknowledged what was accepted."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from fastapi.responses import JSONResponse

from xbus.core.catalog import Catalog
from xbus.core.envelope import ChangeEvent
from xbus.core.metrics import EVENTS_REJECTED
from xbus.core.settings import BusSettings
from xbus.core.validation import FieldError
from xbus.producers.exceptions import PublishError
from xbus.producers.gateway.errors import (
    GatewayError,
    from_publish_error,
    record_problems,
    rejected,
)
from xbus.producers.jsonevents import spec_from_json
from xbus.producers.publisher import EventSpec, Publisher, Receipt


class Ingest:
    """One publisher per department, made when the department first publishes."""

    def __init__(self, bus: BusSettings, catalog: Catalog, delivery_timeout: float) -> None:
        self._bus = bus
        self._catalog = catalog
        self._delivery_timeout = delivery_timeout
        self._publishers: dict[str, Publisher] = {}

    def _publisher(self, department: str) -> Publisher:
        publisher = self._publishers.get(department)
        if publisher is None:
            publisher = Publisher(
                department,
                system="ingest-gateway",
                settings=self._bus,
                catalog=self._catalog,
                origin="gateway",
                delivery_timeout=self._delivery_timeout,
            )
            self._publishers[department] = publisher
        return publisher

    async def close(self) -> None:
        """Close every publisher, waiting for what is still in flight."""
        for publisher in self._publishers.values():
            await asyncio.to_thread(publisher.close)

    async def publish(
        self, department: str, dataset: str, objects: list[Any], *, partial: bool, prefix: str
    ) -> JSONResponse:
        """Publish the events ``objects`` describe and answer 202 with their ids, or, with
        ``partial``, with what was accepted and what was not; ``GatewayError`` otherwise.
        ``prefix`` (formatted with an event's index) starts the path of each bad field."""
        publisher = self._publisher(department)
        events, errors = await self._check(publisher, department, dataset, objects, prefix)
        if errors and (not partial or not events):
            # Without partial acceptance, the valid events of the batch are refused too.
            raise rejected(
                department,
                dataset,
                GatewayError(
                    400,
                    "invalid_record",
                    f"{len(errors)} of {len(objects)} event(s) are invalid; nothing was published",
                    records=errors,
                ),
                len(objects),
            )
        if errors:
            EVENTS_REJECTED.labels(department, dataset, "invalid_record").inc(len(errors))
        receipts = await self._produce(publisher, dataset, list(events.values()))
        if not errors:
            return JSONResponse({"event_ids": [r.event_id for r in receipts]}, status_code=202)
        return JSONResponse(
            {
                "accepted": [
                    {"index": i, "event_id": r.event_id}
                    for i, r in zip(events, receipts, strict=True)
                ],
                "rejected": record_problems(errors),
            },
            status_code=202,
        )

    async def _check(
        self, publisher: Publisher, department: str, dataset: str, objects: list[Any], prefix: str
    ) -> tuple[dict[int, ChangeEvent], dict[int, list[FieldError]]]:
        """The valid events and the problems of the others, each by its index in ``objects``:
        first the envelope fields, then the records against the dataset's schema."""
        errors: dict[int, list[FieldError]] = {}
        specs: dict[int, EventSpec] = {}
        for index, obj in enumerate(objects):
            spec, found = spec_from_json(obj, prefix.format(index))
            if spec is None:
                errors[index] = found
            else:
                specs[index] = spec
        try:
            checked, invalid = await asyncio.to_thread(
                publisher.check_batch, dataset, list(specs.values())
            )
        except PublishError as exc:
            raise rejected(department, dataset, from_publish_error(exc), len(objects)) from None
        events: dict[int, ChangeEvent] = {}
        for position, index in enumerate(specs):
            if position in invalid:
                path = prefix.format(index)
                errors[index] = [FieldError(path + e.path, e.message) for e in invalid[position]]
            else:
                events[index] = checked[position]
        return events, errors

    async def _produce(
        self, publisher: Publisher, dataset: str, events: list[ChangeEvent]
    ) -> list[Receipt]:
        """The receipts of ``events``, once Kafka acknowledged every one; ``GatewayError``
        naming the acknowledged ones if any was not."""
        try:
            futures: list[Future[Receipt]] = await asyncio.to_thread(
                publisher.produce_checked, dataset, events
            )
        except PublishError as exc:  # an event too large for Kafka, refused before sending
            raise rejected(publisher.department, dataset, from_publish_error(exc)) from None
        waiting = [asyncio.wrap_future(f) for f in futures]
        done, late = await asyncio.wait(waiting, timeout=publisher.acknowledgement_timeout)
        outcomes: list[Receipt | BaseException] = [
            (w.exception() or w.result()) for w in waiting if w in done
        ]
        if late:
            # Not answered in time: a 503 the client may retry with the same event ids.
            outcomes.append(publisher.unacknowledged(dataset, len(late)))
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        receipts = [o for o in outcomes if isinstance(o, Receipt)]
        if failed:
            acknowledged = ", ".join(r.event_id for r in receipts) or "none"
            raise from_publish_error(
                failed[0],
                f"{len(failed)} of {len(futures)} event(s) were not acknowledged "
                f"({failed[0]}); acknowledged: {acknowledged}",
            )
        return receipts
