"""Signed grants on the real broker: records written to the grants topic with valid Kafka
credentials but without the office's signature (or with its signature on a grant that does not
validate) are never enforced, while grants the office applied deliver in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import Bus
from tests.support.components import engine, metrics_port, wait_for
from tests.support.grant_helpers import forged_records, licence_grant, write_grant_record
from tests.support.kafka_reading import read_events
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import EventSpec, Publisher
from xbus.streams.grant_files import apply_grants
from xbus.streams.policy_records import REFUSAL_REASONS, grant_value

pytestmark = pytest.mark.broker


def _grant_file(path: Path, grant_id: str, subscriber: str) -> Path:
    path.write_text(
        f"grant: {grant_id}\nsubscriber: {subscriber}\n"
        "dataset: market_regulation.business_licence\npurpose: signed grants test\n"
        "legal_basis: test\napproval: T-1\nvalid_from: 2026-01-01T00:00:00+08:00\n"
        "fields:\n  credit_code: {}\n"
    )
    return path


def _metrics(port: int) -> dict[str, float]:
    """The engine's refusal counter by reason, and the version of each grant it applies."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith(("xbus_engine_grants_refused_total{", "xbus_grant_version{")):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def _refused(port: int, reason: str) -> float | None:
    return _metrics(port).get(f'xbus_engine_grants_refused_total{{reason="{reason}"}}')


def _applies(port: int, grant_id: str) -> bool:
    return any(f'grant="{grant_id}"' in name for name in _metrics(port))


def _publish(bus: Bus) -> str:
    with Publisher("market_regulation", system="signed-grants-test", settings=bus.settings) as p:
        [result] = p.publish_batch(
            "business_licence", [EventSpec(Op.CREATE, after=DemoData().business_licence())]
        )
    return result.event_id


def test_only_grants_the_office_signed_and_that_validate_deliver(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    good = f"good-{tag}"
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [_grant_file(tmp_path / "good.yaml", good, f"good_{tag}")],
    )
    port = metrics_port()
    with engine(bus, tmp_path, f"signed-{tag}", port=port):
        wait_for(lambda: _applies(port, good), 90, "the engine to apply the office's grant")
        before = {reason: _refused(port, reason) for reason in REFUSAL_REASONS}
        assert None not in before.values(), before  # each reason shown from the start

        forged = forged_records(bus.settings, tag)
        for grant_id, value in forged.values():
            write_grant_record(bus.settings, grant_id, value)
        expected = {r: (before[r] or 0.0) + 1 for r in REFUSAL_REASONS}
        wait_for(
            lambda: all(_refused(port, r) == n for r, n in expected.items()),
            30,
            f"one refusal counted per reason: {expected}",
        )
        assert not any(_applies(port, grant_id) for grant_id, _ in forged.values())

        event = _publish(bus)
        got = read_events(bus.settings, f"deliver.good_{tag}.business_licence", {event}, 60)
        assert set(got[event][1]["after"]) == {"credit_code"}
    for subscriber in ("unsigned", "foreign", "unmasked"):
        topic = f"deliver.{subscriber}_{tag}.business_licence"
        assert read_events(bus.settings, topic, {event}, 3) == {}, topic
    log = (tmp_path / "engine.log").read_text(errors="replace")
    for reason, (grant_id, _) in forged.items():
        assert f"grant {grant_id!r}" in log and f"refused ({reason})" in log
    assert "_xbus.grants[0]@" in log
    assert '"signature"' not in log and "purpose" not in log  # no record dumped


def test_a_grant_replaced_by_a_forged_version_stops_delivering(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    victim, sentinel = f"victim-{tag}", f"sentinel-{tag}"
    apply_grants(
        bus.settings,
        Catalog.load(bus.settings.schemas_dir),
        [
            _grant_file(tmp_path / "victim.yaml", victim, f"victim_{tag}"),
            _grant_file(tmp_path / "sentinel.yaml", sentinel, f"sentinel_{tag}"),
        ],
    )
    victim_topic = f"deliver.victim_{tag}.business_licence"
    sentinel_topic = f"deliver.sentinel_{tag}.business_licence"
    port = metrics_port()
    with engine(bus, tmp_path, f"replaced-{tag}", port=port):
        wait_for(lambda: _applies(port, victim), 90, "the engine to apply the grant")
        first = _publish(bus)
        assert read_events(bus.settings, victim_topic, {first}, 60).keys() == {first}

        # Version 2 widens it to the ID number, signed by a key that is not the office's.
        wider = licence_grant(
            victim,
            f"victim_{tag}",
            "  credit_code: {}\n  legal_representative_id: {approved_unmasked: X-1}\n",
        )
        stranger = Ed25519PrivateKey.generate()
        write_grant_record(bus.settings, victim, grant_value(wider, 2, stranger))
        wait_for(lambda: not _applies(port, victim), 30, "the grant to go out of force")
        second = _publish(bus)
        assert read_events(bus.settings, sentinel_topic, {second}, 60).keys() == {second}
    assert read_events(bus.settings, victim_topic, {second}, 3) == {}


def test_an_engine_without_the_office_public_key_does_not_start(
    registered: Bus, tmp_path: Path
) -> None:
    env = {k: v for k, v in registered.env().items() if k != "XBUS_GRANT_VERIFY_KEY_FILE"}
    done = subprocess.run(
        [sys.executable, "-m", "xbus.cli", "run", "engine", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.getcwd(),
    )
    assert done.returncode == 1
    assert "XBUS_GRANT_VERIFY_KEY_FILE" in done.stderr
    assert "Traceback" not in done.stderr
