"""``xbus grants apply`` signs what it writes, and ``xbus grants list`` shows, next to the
grants in force, every grant id whose record engines refuse, with why: the real command on the
real broker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.support.components import run_xbus
from tests.support.grant_helpers import forged_records, write_grant_record
from xbus.core.topics import GRANTS_TOPIC
from xbus.streams.state import grant_records

pytestmark = pytest.mark.broker


def _grant_file(path: Path, grant_id: str, subscriber: str) -> Path:
    path.write_text(
        f"grant: {grant_id}\nsubscriber: {subscriber}\n"
        "dataset: market_regulation.business_licence\npurpose: list test\n"
        "legal_basis: test\napproval: T-1\nvalid_from: 2026-01-01T00:00:00+08:00\n"
        "fields:\n  credit_code: {}\n"
    )
    return path


def test_list_shows_refused_records_with_their_reason_next_to_grants_in_force(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    path = _grant_file(tmp_path / "g.yaml", f"ok-{tag}", f"ok_{tag}")
    applied = run_xbus(bus.env(), "grants", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    assert f"ok-{tag} v1: applied" in applied.stdout
    stored = json.loads(grant_records(bus.settings)[f"ok-{tag}"].value)
    assert stored["version"] == 1 and stored["signature"]

    forged = forged_records(bus.settings, tag)
    for grant_id, value in forged.values():
        write_grant_record(bus.settings, grant_id, value)

    listed = run_xbus(bus.env() | {"COLUMNS": "250"}, "grants", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(f"ok-{tag}" in line and "in force" in line for line in lines), listed.stdout
    for reason, (grant_id, _) in forged.items():
        [line] = [x for x in lines if x.startswith(f"refused: {grant_id} ")]
        assert f"({reason}) at {GRANTS_TOPIC}[0]@" in line, line
    [invalid] = [x for x in lines if x.startswith(f"refused: unmasked-{tag} ")]
    assert "legal_representative_id" in invalid


def test_apply_again_puts_a_grant_with_a_forged_record_back_in_force(
    registered: Bus, tmp_path: Path
) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    grant_id = f"unsigned-{tag}"  # forged_records writes it unsigned, version 1
    write_grant_record(bus.settings, grant_id, forged_records(bus.settings, tag)["unsigned"][1])
    path = _grant_file(tmp_path / "g.yaml", grant_id, f"unsigned_{tag}")
    applied = run_xbus(bus.env(), "grants", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    assert f"{grant_id} v2: applied" in applied.stdout
    listed = run_xbus(bus.env(), "grants", "list").stdout
    assert f"refused: {grant_id} " not in listed
    assert run_xbus(bus.env(), "grants", "apply", str(path)).stdout.strip().endswith("unchanged")


def test_apply_without_the_signing_key_writes_nothing(registered: Bus, tmp_path: Path) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    env = {k: v for k, v in bus.env().items() if k != "XBUS_GRANT_SIGNING_KEY_FILE"}
    path = _grant_file(tmp_path / "g.yaml", f"keyless-{tag}", f"keyless_{tag}")
    done = run_xbus(env, "grants", "apply", str(path))
    assert done.returncode == 1
    assert "XBUS_GRANT_SIGNING_KEY_FILE" in done.stderr and "Traceback" not in done.stderr
    assert f"keyless-{tag}" not in grant_records(bus.settings)


def test_list_without_the_verifying_key_says_which_setting_is_missing(registered: Bus) -> None:
    env = {k: v for k, v in registered.env().items() if k != "XBUS_GRANT_VERIFY_KEY_FILE"}
    done = run_xbus(env, "grants", "list")
    assert done.returncode == 1
    assert "XBUS_GRANT_VERIFY_KEY_FILE" in done.stderr and "Traceback" not in done.stderr
