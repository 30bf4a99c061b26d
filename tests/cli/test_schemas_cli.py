"""``xbus schemas check|register`` and ``xbus publish`` as an operator runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.support.checkout import ROOT
from tests.support.kafka_reading import end_offsets
from xbus.core.values import to_json
from xbus.producers.demodata import DemoData

pytestmark = pytest.mark.broker


def xbus(
    bus: Bus, *args: str, schemas: Path | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = bus.env() | ({"XBUS_SCHEMAS_DIR": str(schemas)} if schemas else {})
    return subprocess.run(
        [sys.executable, "-m", "xbus.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=120,
    )


def _copy_schemas(tmp_path: Path) -> Path:
    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schemas)
    return schemas


def _edit(path: Path, change: object) -> None:
    schema = json.loads(path.read_text())
    change(schema)  # type: ignore[operator]
    path.write_text(json.dumps(schema, ensure_ascii=False, indent=1))


def test_register_is_idempotent_and_check_passes_on_the_catalog(registered: Bus) -> None:
    again = xbus(registered, "schemas", "register")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and "registered" not in again.stdout.replace(
        "registered", "", 0
    )
    check = xbus(registered, "schemas", "check")
    assert check.returncode == 0, check.stderr
    assert f"{len(list((ROOT / 'schemas').glob('*/*.avsc')))} datasets" in check.stdout


def test_an_incompatible_change_is_named_by_dataset_field_and_rule(
    registered: Bus, tmp_path: Path
) -> None:
    schemas = _copy_schemas(tmp_path)

    def break_it(schema: dict) -> None:  # type: ignore[type-arg]
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "contact_phone"]
        schema["fields"].append(
            {"name": "tax_office", "type": "string", "classification": "internal"}
        )

    _edit(schemas / "market_regulation" / "business_licence.avsc", break_it)

    check = xbus(registered, "schemas", "check", schemas=schemas)
    register = xbus(registered, "schemas", "register", schemas=schemas)

    assert check.returncode == 1
    assert (
        "market_regulation.business_licence: field tax_office: field 'tax_office' was "
        "added without a default"
    ) in check.stderr
    assert "rule field_without_default, mode FULL_TRANSITIVE" in check.stderr
    assert register.returncode == 1
    assert "not registering" in register.stderr


def test_a_change_is_checked_against_a_git_revision(registered: Bus, tmp_path: Path) -> None:
    schemas = _copy_schemas(tmp_path)
    git = ["git", "-c", "user.email=office@example.org", "-c", "user.name=office"]
    subprocess.run(["git", "init", "-q"], cwd=schemas, check=True)
    subprocess.run([*git, "add", "."], cwd=schemas, check=True)
    subprocess.run([*git, "commit", "-qm", "catalog"], cwd=schemas, check=True)

    def narrow(schema: dict) -> None:  # type: ignore[type-arg]
        kind = next(f for f in schema["fields"] if f["name"] == "kind")
        kind["type"]["symbols"].remove("REISSUE")

    _edit(schemas / "civil_affairs" / "marriage_registration.avsc", narrow)
    check = xbus(
        registered, "schemas", "check", "--no-registry", "--against-git", "HEAD", schemas=schemas
    )

    assert check.returncode == 1
    assert "civil_affairs.marriage_registration: field kind" in check.stderr
    assert "enum_symbol_removed" in check.stderr and "against git HEAD" in check.stderr


def test_a_schema_without_classification_is_refused_with_file_and_field(
    registered: Bus, tmp_path: Path
) -> None:
    schemas = _copy_schemas(tmp_path)
    _edit(schemas / "health" / "clinic.avsc", lambda s: s["fields"][1].pop("classification"))
    check = xbus(registered, "schemas", "check", "--no-registry", schemas=schemas)
    assert check.returncode == 1
    assert "clinic.avsc" in check.stderr and "'name' needs a classification" in check.stderr


def test_publish_checks_the_whole_file_first(registered: Bus, tmp_path: Path) -> None:
    data = DemoData(seed=41)
    lines = [to_json({"op": "SNAPSHOT", "after": data.clinic()}) for _ in range(30)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, '{"op": "SNAPSHOT", "after": {"clinic_code": 7}}']) + "\n")
    topic = "gov.health.clinic"
    before = end_offsets(registered.settings, topic)

    refused = xbus(registered, "publish", "--dataset", "health.clinic", "--file", str(bad))

    assert refused.returncode == 1
    assert f"{bad}:31: after.clinic_code: expected a string" in " ".join(refused.stderr.split())
    assert "nothing was published" in refused.stderr
    assert end_offsets(registered.settings, topic) == before

    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines) + "\n")
    published = xbus(registered, "publish", "--dataset", "clinic", "--file", str(good))

    assert published.returncode == 0, published.stderr
    assert "30 published, 0 invalid skipped, 0 not acknowledged" in published.stdout
    after = end_offsets(registered.settings, topic)
    assert sum(after.values()) - sum(before.values()) == 30
