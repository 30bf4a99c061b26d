"""The alert rules in deploy/prometheus: valid for Prometheus, each one fired and not fired
by promtool's unit tests, each with its runbook entry, and naming only metrics xbus exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import xbus.core.metrics  # noqa: F401  (registers every xbus metric)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: `make install` installs Debian's prometheus")
    return found


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def test_promtool_finds_the_rules_valid() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), "alerts no test fires"
    assert names - quiet == set(), "alerts no test shows quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_summary_and_a_runbook_entry() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in _alerts():
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["runbook"] == f"docs/operations.md#{alert['alert'].lower()}"
        assert alert["alert"].lower() in headings, f"no runbook heading for {alert['alert']}"


def test_the_rules_name_only_metrics_xbus_exports() -> None:
    exported = {
        sample.name
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name.startswith("xbus_")
    }
    # A metric with no child yet yields no sample: take the names its family would give.
    for metric in REGISTRY.collect():
        if metric.name.startswith("xbus_"):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            exported.update(metric.name + s for s in suffixes.get(metric.type, [""]))
    text = RULES.read_text()
    named = {n for n in re.findall(r"\bxbus_[a-z_]+", text) if not n.endswith("_")}
    named |= {
        f"xbus_events_{kind}_total"
        for pattern in re.findall(r"xbus_events_\(([a-z|]+)\)_total", text)
        for kind in pattern.split("|")
    }
    assert named, "the rules name no xbus metric"
    assert named - exported == set()
