"""Folders of this checkout the tests read: the demo's schemas, grants and delivery files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
GRANTS = ROOT / "grants"
DELIVERIES = ROOT / "deliveries"
