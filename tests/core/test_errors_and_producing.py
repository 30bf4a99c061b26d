"""One error hierarchy, and produce-and-confirm against a real broker: a record the broker
refuses is reported, although ``flush`` alone would say everything was written."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import uuid

import pytest
from confluent_kafka import Producer

import xbus.cli
import xbus.console
import xbus.consumers
import xbus.core
import xbus.deploy
import xbus.producers
import xbus.streams
from tests.conftest import Bus
from xbus.core.admin import ensure_topics
from xbus.core.errors import Unacknowledged, XbusError
from xbus.core.producing import Record, produce_and_confirm


def _modules() -> list[str]:
    found = []
    for package in (
        xbus.core,
        xbus.producers,
        xbus.streams,
        xbus.consumers,
        xbus.deploy,
        xbus.console,
        xbus.cli,
    ):
        found.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith(".__main__"):
                found.append(info.name)
    return found


def test_every_error_xbus_defines_is_an_xbus_error_with_a_reason() -> None:
    outside = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, XbusError) or not isinstance(cls.reason, str):
                outside.append(f"{name}.{cls.__name__}")
    assert not outside, f"errors outside the XbusError hierarchy: {outside}"


@pytest.mark.broker
@pytest.mark.parametrize("errors_only", [False, True], ids=["every report", "failures only"])
def test_a_refused_record_is_not_taken_as_written(bus: Bus, errors_only: bool) -> None:
    topic = f"test.refused.{uuid.uuid4().hex[:8]}"
    ensure_topics(bus.settings, {topic: 1})
    # The client lets 3 MB through; the broker's limit (1 MB) refuses it (random bytes, so
    # that compression cannot bring it under). The engine's producer asks for delivery
    # reports of failures only: a refusal must still be seen.
    producer = Producer(
        bus.settings.producer_config(
            **{"message.max.bytes": 4_000_000, "delivery.report.only.error": errors_only}
        )
    )
    records = [Record(topic, b"small", b"k1"), Record(topic, os.urandom(3_000_000), b"k2")]
    with pytest.raises(Unacknowledged, match=r"2 records.*1 refused") as caught:
        produce_and_confirm(producer, records, timeout=30, what="2 records")
    assert caught.value.retriable
    assert produce_and_confirm(producer, records[:1], timeout=30, what="1 record") == 1
