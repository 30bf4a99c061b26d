"""The operations page lists every metric xbus exports, so an operator finds each one there."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

import xbus.core.metrics  # noqa: F401  (registers every xbus metric)

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_xbus_metric_is_in_the_operations_page() -> None:
    page = OPERATIONS.read_text()
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("xbus_")
    }
    assert len(exported) > 20
    missing = sorted(name for name in exported if f"`{name}`" not in page)
    assert not missing, f"docs/operations.md does not list {missing}"
