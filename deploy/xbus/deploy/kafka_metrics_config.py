"""The broker's JMX exporter rules (``deploy/xbus/deploy/resources/kafka/jmx-exporter.yml``, the
file the local broker's agent reads) as a ConfigMap for Strimzi's ``metricsConfig``, so that the
brokers on Kubernetes serve the same metrics, under the same names, as the local one, and the
alert rules written for one hold for both.

``python -m xbus.deploy.kafka_metrics_config deploy/xbus/deploy/resources/kafka/jmx-exporter.yml``
prints it (``make manifests`` writes it to ``deploy/kubernetes/kafka/metrics-config.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from xbus.core.errors import ConfigurationError
from xbus.deploy import generated_manifest

# What the Kafka resource's metricsConfig.valueFrom.configMapKeyRef names.
NAME = "xbus-kafka-metrics"
KEY = "jmx-exporter.yml"


def kafka_metrics_config(rules_file: Path, name: str = NAME) -> dict[str, Any]:
    """A ConfigMap holding ``rules_file`` (JMX exporter rules) unchanged, under ``KEY``. Raises
    ``ConfigurationError`` if the file is not YAML with a list of rules."""
    text = rules_file.read_text(encoding="utf-8")
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{rules_file}: not YAML: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("rules"), list):
        raise ConfigurationError(f"{rules_file}: JMX exporter rules have a list of `rules`")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "xbus"}},
        "data": {KEY: text},
    }


def render(config_map: dict[str, Any], rules_file: Path) -> str:
    """The ConfigMap as YAML, under a header naming the file it was made from."""
    return generated_manifest.render(
        config_map,
        what="The JMX exporter rules",
        source=rules_file,
        module="xbus.deploy.kafka_metrics_config",
    )


def main(argv: list[str]) -> int:
    """Print the ConfigMap of the JMX exporter rules file ``argv[0]``."""
    if len(argv) != 1:
        print("usage: python -m xbus.deploy.kafka_metrics_config RULES_FILE", file=sys.stderr)
        return 2
    rules_file = Path(argv[0])
    sys.stdout.write(render(kafka_metrics_config(rules_file), rules_file))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
