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
# The broker's JMX exporter rules: the local broker's, and Strimzi's on Kubernetes.
JMX_EXPORTER_RULES = (
    ROOT / "deploy" / "xbus" / "deploy" / "resources" / "kafka" / "jmx-exporter.yml"
)


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


def _mbean_of(metric: str, exporter: dict) -> str | None:
    """The object name of the MBean a JMX exporter rule turns into ``metric``, if one rule
    of ``exporter`` (with lower-case output names) makes that name from an MBean that its
    ``includeObjectNames`` lets it read; else None."""
    group = re.compile(r"\(([^()]*)\)")  # the rules' groups hold no groups: (A|B), (.+)
    for rule in exporter["rules"]:
        # Split on the groups: text at even places, the groups (or $n) at odd ones.
        pattern = group.split(rule["pattern"])
        groups = pattern[1::2]
        name = re.split(r"\$(\d+)", rule["name"])
        used = [int(n) - 1 for n in name[1::2]]
        name[1::2] = [f"({groups[n]})" for n in used]
        suffix = "(?:_total)?" if rule.get("type") == "COUNTER" else ""
        found = re.fullmatch("".join(name) + suffix, metric, re.IGNORECASE)
        if found is None:
            continue
        # The MBean's name as the pattern spells it, a group the name used as its alternative.
        chosen = dict(zip(used, found.groups(), strict=True))
        pattern[1::2] = [
            next((a for a in g.split("|") if a.lower() == chosen.get(i)), f"({g})")
            for i, g in enumerate(groups)
        ]
        bean = "".join(pattern)
        domain, keys = bean.split("<>")[0].rstrip(">").split("<")
        object_name = f"{domain}:{keys.replace(', ', ',')}"
        if any(
            object_name == included or object_name.startswith(included.removesuffix("*"))
            for included in exporter["includeObjectNames"]
        ):
            return object_name
    return None


def test_the_kafka_alerts_name_metrics_the_brokers_jmx_exporter_makes() -> None:
    exporter = yaml.safe_load(JMX_EXPORTER_RULES.read_text())
    assert exporter["lowercaseOutputName"] is True
    named = {
        name
        for alert in _alerts()
        if alert["alert"].startswith("Kafka")
        for name in re.findall(r"\bkafka_[a-z0-9_]+", alert["expr"])
    }
    assert named == {
        "kafka_server_replicamanager_underreplicatedpartitions",
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "kafka_controller_kafkacontroller_activecontrollercount",
    }
    for name in named:
        assert _mbean_of(name, exporter), f"no rule of {JMX_EXPORTER_RULES.name} makes {name}"
    # The check itself refuses a name no rule makes.
    assert _mbean_of("kafka_server_replicamanager_offlinereplicacount", exporter) is None
