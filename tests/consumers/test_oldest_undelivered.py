"""The connector's age of the oldest event not yet delivered: set from the batch in hand, per
subscriber, and cleared once the batch is done (delivered or left for later)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from prometheus_client import REGISTRY

from xbus.consumers.runtime import Connector
from xbus.consumers.sinks.file import FileSink
from xbus.core.settings import BusSettings


def _message(topic: str, partition: int, offset: int, written_ms: int) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        value=b"",
        timestamp=(TIMESTAMP_CREATE_TIME, written_ms),
    )


def _oldest(subscriber: str) -> float | None:
    return REGISTRY.get_sample_value(
        "xbus_connector_oldest_undelivered_timestamp_seconds",
        {"subscriber": subscriber, "connector": "file"},
    )


def test_the_oldest_event_in_hand_is_exported_per_subscriber_and_cleared_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: the connector is never asked to reach Kafka here.
    settings = BusSettings(bootstrap_servers="127.0.0.1:1")
    connector = Connector(settings, ["tax_bureau", "open_data"], FileSink(tmp_path))
    batch = [
        _message("deliver.tax_bureau.business_licence", 0, 7, 1_700_000_003_000),
        _message("deliver.tax_bureau.business_licence", 1, 2, 1_700_000_001_500),
        _message("deliver.tax_bureau.business_licence", 0, 8, 1_700_000_004_000),
        _message("deliver.open_data.service_request", 2, 40, 1_700_000_009_000),
    ]
    while_delivering: dict[str, float | None] = {}

    def deliver(messages: list[Message], stop: threading.Event) -> None:
        while_delivering.update({s: _oldest(s) for s in ("tax_bureau", "open_data")})
        raise RuntimeError("the target went away mid-batch")

    monkeypatch.setattr(connector, "_deliver", deliver)
    try:
        with pytest.raises(RuntimeError):
            connector._process(batch, threading.Event())
    finally:
        connector.close()

    assert while_delivering == {"tax_bureau": 1_700_000_001.5, "open_data": 1_700_000_009.0}
    assert _oldest("tax_bureau") == 0
    assert _oldest("open_data") == 0
