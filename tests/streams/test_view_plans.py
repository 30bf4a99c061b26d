"""Views spliced from the source bytes where that gives the reference path's bytes, and
encoded whole where it would not: a department's writer schema that is not the catalog's
(fields reordered or added, an enum's symbols in another order, a decimal of another scale),
and a body with bytes its schema does not describe."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from tests.support.checkout import ROOT
from tests.support.grant_helpers import compile_grant
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event, record_full_name, with_union_branches
from xbus.core.metrics import ENGINE_VIEWS_ENCODED_WHOLE
from xbus.core.serde import WireEncoder, WriterSchemas
from xbus.producers.demodata import DemoData
from xbus.streams.grants import Grant
from xbus.streams.routing import Router, Routing, ViewEncoders, metric_child
from xbus.streams.state import PolicySnapshot

CATALOG = Catalog.load(ROOT / "schemas")
DATASET = CATALOG.get("market_regulation", "business_licence")
NOW = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
GRANT = compile_grant(
    Grant.model_validate(
        {
            "grant": "splice-test",
            "subscriber": "splicer",
            "dataset": DATASET.qualified_name,
            "purpose": "p",
            "legal_basis": "l",
            "approval": "P-1",
            "valid_from": "2026-01-01T00:00:00+08:00",
            "fields": {
                "credit_code": {},
                "name": {},
                "registered_capital": {},
                "status": {},
                "legal_representative_id": {"mask": {"type": "show_last", "n": 4}},
            },
        }
    ),
    CATALOG,
)


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBUS_PSEUDONYM_KEY", "view-plans-test-secret-key")


class _Registry:
    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = Schema(json.dumps(schema), "AVRO")

    def get_schema(self, schema_id: int) -> Schema:
        return self._schema


def _writer(change: Any) -> dict[str, Any]:
    """The dataset's envelope with its record changed by ``change(fields)``."""
    envelope = copy.deepcopy(DATASET.envelope)
    before = next(f for f in envelope["fields"] if f["name"] == "before")
    record = before["type"][1]
    change(record["fields"])
    return envelope


def _route(
    writer: dict[str, Any], value: tuple[bytes, bytes], splice: bool
) -> tuple[Routing, Router]:
    router = Router(
        lambda: PolicySnapshot({DATASET.topic: (GRANT,)}, {}),
        WriterSchemas(_Registry(writer)),  # type: ignore[arg-type]
        ViewEncoders(None),
        splice=splice,
    )
    return router.route(DATASET.topic, 0, 7, value[0], value[1], NOW), router


def _same_as_reference(writer: dict[str, Any], value: tuple[bytes, bytes]) -> int:
    """Route ``value`` both ways; the outputs must be equal. How many views were encoded
    whole on the fast path."""
    fast, router = _route(writer, value, splice=True)
    reference, _ = _route(writer, value, splice=False)
    assert [(o.topic, o.key, o.value, o.headers) for o in fast.outputs] == [
        (o.topic, o.key, o.value, o.headers) for o in reference.outputs
    ]
    return int(router.counts[metric_child(ENGINE_VIEWS_ENCODED_WHOLE, "splicer", DATASET.name)])


def _value(writer: dict[str, Any], trailing: bytes = b"", **licence: Any) -> tuple[bytes, bytes]:
    """A licence's key and value as written with ``writer``."""
    record = {**DemoData(seed=3).business_licence(), **licence}
    event = change_event(
        department=DATASET.department,
        dataset=DATASET.name,
        op=Op.CREATE,
        after=record,
        system="t",
    )
    before = next(f for f in writer["fields"] if f["name"] == "before")
    name = record_full_name(before["type"][1])
    value = WireEncoder(1, writer).encode(with_union_branches(event, name))
    return DATASET.key_of(record).encode(), value + trailing


def test_the_catalogs_own_schema_is_spliced() -> None:
    writer = DATASET.envelope
    value = _value(writer)
    assert _same_as_reference(writer, value) == 0
    assert len(_route(writer, value, splice=True)[0].deliveries) == 1


def test_reordered_and_added_fields_are_still_spliced() -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        fields.reverse()
        fields.append({"name": "note", "type": ["null", "string"], "default": None})

    writer = _writer(change)
    assert _same_as_reference(writer, _value(writer, note="extra")) == 0


def test_an_enum_whose_symbols_are_in_another_order_is_not_copied() -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        status = next(f for f in fields if f["name"] == "status")
        status["type"]["symbols"] = list(reversed(status["type"]["symbols"]))

    writer = _writer(change)
    # Copying the byte would send another symbol: the plan encodes the value instead.
    assert _same_as_reference(writer, _value(writer, status="SUSPENDED")) == 0


def test_a_decimal_of_another_scale_is_not_copied() -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        capital = next(f for f in fields if f["name"] == "registered_capital")
        capital["type"] = {**capital["type"], "scale": 3}

    writer = _writer(change)
    value = _value(writer, registered_capital=decimal.Decimal("1234.567"))
    # The reference path cannot put 3 decimal places in the view's 2: the grant fails on
    # the record, and the fast path says the same rather than send the bytes as they are.
    _same_as_reference(writer, value)
    assert _route(writer, value, splice=True)[0].deliveries == []


def test_bytes_the_schema_does_not_describe_are_encoded_whole() -> None:
    writer = DATASET.envelope
    assert _same_as_reference(writer, _value(writer, b"\x00trailing")) == 1
