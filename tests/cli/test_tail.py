"""``xbus tail`` on a real topic: decoded Avro, JSON and foreign bytes, one line each."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid

import pytest

from tests.conftest import Bus
from tests.support.components import run_xbus
from tests.support.delivery_feed import DeliveryFeed, licence
from xbus.core.envelope import Op

pytestmark = pytest.mark.broker


def _xbus(bus: Bus, *args: str) -> subprocess.CompletedProcess[str]:
    return run_xbus(bus.env(), *args, timeout=120)


def test_tail_prints_each_record_decoded_with_its_headers(bus: Bus) -> None:
    feed = DeliveryFeed(bus.settings, f"tail_{uuid.uuid4().hex[:6]}", partitions=1)
    sent = [feed.send(f"k{n}", Op.CREATE, licence(n)) for n in range(3)]
    feed.send_raw("odd", b"\xff\xfenot avro, not json")
    feed.flush()
    result = _xbus(bus, "tail", feed.topic, "--from-beginning", "--count", "4", "--headers")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["offset"] for x in lines] == [0, 1, 2, 3]
    assert [x["value"]["event_id"] for x in lines[:3]] == [e["event_id"] for e in sent]
    assert lines[1]["key"] == "k1"
    assert lines[1]["value"]["after"]["registered_capital"] == str(licence(1)["registered_capital"])
    assert lines[1]["headers"]["xbus-event-id"] == sent[1]["event_id"]
    assert base64.b64decode(lines[3]["value"]["base64"]) == b"\xff\xfenot avro, not json"


def test_tail_of_a_missing_topic_says_so(bus: Bus) -> None:
    result = _xbus(bus, "tail", "deliver.nobody.nothing", "--count", "1")
    assert result.returncode == 1
    assert "no topic 'deliver.nobody.nothing'" in result.stderr
