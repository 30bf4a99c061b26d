"""Pure logic of delivery: signatures, backoff, PostgreSQL column types."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from xbus.consumers.deliveries import read_secret
from xbus.consumers.exceptions import WebhookSignatureError
from xbus.consumers.runtime import RetryPolicy
from xbus.consumers.sinks.postgres_columns import columns_of
from xbus.consumers.sinks.signing import WeakWebhookSecret, sign, verify_webhook
from xbus.consumers.sinks.webhook import WebhookSink
from xbus.core.errors import ConfigurationError

BODY = b'{"event_id":"e1","op":"CREATE"}'
SECRET = b"a subscriber's signing secret, 32+ bytes"
OTHER = b"another subscriber's secret of 32+ bytes"
OLD, NEW = b"the old secret, rotated out: 32+ bytes", b"the new secret, rotated in: 32+ bytes!"


def test_a_signed_body_verifies_and_any_change_or_other_secret_is_refused() -> None:
    signature = sign(BODY, SECRET)
    verify_webhook(BODY, signature, SECRET.decode())
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook(BODY.replace(b"CREATE", b"DELETE"), signature, SECRET)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook(BODY, signature, OTHER)
    with pytest.raises(WebhookSignatureError, match="no X-Xbus-Signature"):
        verify_webhook(BODY, None, SECRET)
    with pytest.raises(WebhookSignatureError, match="no timestamp"):
        verify_webhook(BODY, "v1=abc", SECRET)


def test_an_old_signature_is_refused_as_a_possible_replay() -> None:
    signature = sign(BODY, SECRET, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookSignatureError, match="replay"):
        verify_webhook(BODY, signature, SECRET)
    verify_webhook(BODY, signature, SECRET, tolerance=900)


def test_a_rotated_secret_verifies_while_both_signatures_are_sent() -> None:
    old, new = sign(BODY, OLD, timestamp=1000), sign(BODY, NEW, timestamp=1000)
    both = f"{old},v1={new.split('v1=')[1]}"
    verify_webhook(BODY, both, NEW, now=1000)
    verify_webhook(BODY, both, OLD, now=1000)


@pytest.mark.parametrize("secret", [b"", "", b"short", "x" * 31])
def test_an_empty_or_short_secret_is_refused_on_both_sides(secret: bytes | str) -> None:
    signature = sign(BODY, SECRET)

    with pytest.raises(WeakWebhookSecret, match="at least 32 random bytes"):
        verify_webhook(BODY, signature, secret)
    with pytest.raises(ConfigurationError, match="at least 32"):
        sign(BODY, secret)


def test_the_webhook_sink_and_the_secret_reader_refuse_a_short_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = tmp_path / "short.secret"
    short.write_bytes(b"only-20-bytes-long!!\n")
    monkeypatch.setenv("HOOK_SECRET", "")

    with pytest.raises(WeakWebhookSecret, match=r"short\.secret\) is 20 bytes long"):
        read_secret(short, None)
    with pytest.raises(ConfigurationError):
        read_secret(None, "HOOK_SECRET")
    with pytest.raises(WeakWebhookSecret):
        WebhookSink("https://x.example/hook", b"too short")


def test_backoff_grows_with_jitter_up_to_its_ceiling_and_obeys_retry_after() -> None:
    policy = RetryPolicy(initial=0.2, maximum=5.0)
    delays = [policy.delay(n) for n in range(1, 12)]
    assert 0.1 <= delays[0] <= 0.2
    assert 0.4 <= delays[2] <= 0.8
    assert all(2.5 <= d <= 5.0 for d in delays[6:])
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert policy.delay(3, retry_after=10_000) == policy.longest_retry_after


def _view(fields: list[dict[str, object]]) -> dict[str, object]:
    record = {"type": "record", "name": "V", "namespace": "xbus.view.s", "fields": fields}
    return {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "before", "type": ["null", record]},
            {"name": "after", "type": ["null", "xbus.view.s.V"]},
        ],
    }


def test_view_fields_become_typed_columns() -> None:
    columns = columns_of(
        _view(
            [
                {"name": "code", "type": "string"},
                {"name": "n", "type": ["null", "long"]},
                {"name": "born", "type": {"type": "int", "logicalType": "date"}},
                {
                    "name": "amount",
                    "type": {
                        "type": "bytes",
                        "logicalType": "decimal",
                        "precision": 12,
                        "scale": 2,
                    },
                },
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A"]}},
                {"name": "address", "type": {"type": "record", "name": "Addr", "fields": []}},
                {"name": "tags", "type": {"type": "array", "items": "string"}},
            ]
        )
    )
    assert [(c.name, c.sql_type) for c in columns] == [
        ("code", "text"),
        ("n", "bigint"),
        ("born", "date"),
        ("amount", "numeric(12,2)"),
        ("at", "timestamptz"),
        ("kind", "text"),
        ("address", "jsonb"),
        ("tags", "jsonb"),
    ]


def test_a_view_field_in_the_sinks_own_namespace_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="_xbus_key"):
        columns_of(_view([{"name": "_xbus_key", "type": "string"}]))
