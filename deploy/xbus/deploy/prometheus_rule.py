"""The alert rules of ``deploy/prometheus/alerts.yml`` as a prometheus-operator
``PrometheusRule``, so that Kubernetes and a plain Prometheus run the same rules from one file.

``python -m xbus.deploy.prometheus_rule deploy/prometheus/alerts.yml`` prints it
(``make manifests`` writes it to ``deploy/kubernetes/monitoring/prometheus-rule.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from xbus.core.errors import ConfigurationError
from xbus.deploy import generated_manifest

NAME = "xbus-alerts"


def prometheus_rule(rules_file: Path, name: str = NAME) -> dict[str, Any]:
    """A ``PrometheusRule`` whose ``spec.groups`` are the groups of ``rules_file`` (a
    Prometheus rules file), unchanged. Raises ``ConfigurationError`` if the file has no groups."""
    content = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    if not isinstance(content, dict) or not isinstance(content.get("groups"), list):
        raise ConfigurationError(f"{rules_file}: a Prometheus rules file has a list of groups")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "xbus"}},
        "spec": {"groups": content["groups"]},
    }


def render(rule: dict[str, Any], rules_file: Path) -> str:
    """The rule as YAML, under a header naming the file it was made from."""
    return generated_manifest.render(
        rule, what="The alert rules", source=rules_file, module="xbus.deploy.prometheus_rule"
    )


def main(argv: list[str]) -> int:
    """Print the ``PrometheusRule`` of the rules file ``argv[0]``."""
    if len(argv) != 1:
        print("usage: python -m xbus.deploy.prometheus_rule RULES_FILE", file=sys.stderr)
        return 2
    rules_file = Path(argv[0])
    sys.stdout.write(render(prometheus_rule(rules_file), rules_file))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
