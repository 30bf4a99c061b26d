"""Subscriber delivery files: what is accepted and what is refused, with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from xbus.consumers.deliveries import (
    FileDelivery,
    PostgresDelivery,
    WebhookDelivery,
    build_sink,
    load_deliveries,
)
from xbus.consumers.sinks.webhook import WebhookSink
from xbus.core.errors import ConfigurationError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_example_is_valid() -> None:
    found, problems = load_deliveries([Path(__file__).parents[2] / "deliveries"])
    assert not problems
    assert {s.subscriber for s in found} == {"tax_bureau"}


def test_a_file_with_every_kind_of_delivery_loads(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        "subscriber: tax_bureau\n"
        "deliveries:\n"
        "  - kind: webhook\n"
        "    url: https://tax.example/hook\n"
        "    secret_env: TAX_SECRET\n"
        "    events_per_request: 50\n"
        "  - kind: postgres\n"
        "    dsn_env: TAX_DSN\n"
        "  - kind: file\n"
        "    dir: /var/lib/xbus\n",
    )
    found, problems = load_deliveries([tmp_path])
    assert not problems
    kinds = [type(d) for d in found[0].deliveries]
    assert kinds == [WebhookDelivery, PostgresDelivery, FileDelivery]


def test_mistakes_are_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad.yaml",
        "subscriber: Tax-Bureau\n"
        "deliveries:\n"
        "  - kind: webhook\n"
        "    url: ftp://tax.example/hook\n"
        "  - kind: carrier_pigeon\n"
        "  - kind: file\n"
        "    dir: /tmp/x\n"
        "    rotate_mb: -1\n",
    )
    _, problems = load_deliveries([path])
    text = sorted(str(p) for p in problems)
    assert any(t.startswith(f"{path}:1: subscriber:") for t in text), text
    assert any(t.startswith(f"{path}:4: deliveries.0.url:") and "http" in t for t in text), text
    assert any(f"{path}:5: deliveries.1" in t and "webhook, postgres or file" in t for t in text)
    assert any(t.startswith(f"{path}:8: deliveries.2.rotate_mb:") for t in text), text


def test_one_subscriber_declared_twice_is_refused(tmp_path: Path) -> None:
    body = "subscriber: tax_bureau\ndeliveries:\n  - kind: file\n    dir: /tmp/x\n"
    _write(tmp_path, "a.yaml", body)
    _write(tmp_path, "b.yaml", body)
    found, problems = load_deliveries([tmp_path])
    assert len(found) == 1
    assert "already declared" in str(problems[0])


def test_secrets_are_read_when_the_sink_is_built_and_missing_ones_say_which(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = WebhookDelivery(kind="webhook", url="https://x.example/h", secret_env="HOOK_SECRET")
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="HOOK_SECRET"):
        build_sink("tax_bureau", hook)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    with pytest.raises(ConfigurationError, match=r"\$HOOK_SECRET\) is 6 bytes long"):
        build_sink("tax_bureau", hook)
    monkeypatch.setenv("HOOK_SECRET", "s3cret-of-the-tax-bureau-32-bytes-or-more")
    assert isinstance(build_sink("tax_bureau", hook), WebhookSink)
    monkeypatch.delenv("NO_SUCH_DSN", raising=False)
    with pytest.raises(ConfigurationError, match="NO_SUCH_DSN"):
        build_sink("tax_bureau", PostgresDelivery(kind="postgres", dsn_env="NO_SUCH_DSN"))
