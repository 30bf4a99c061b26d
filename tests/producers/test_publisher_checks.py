"""What the Publisher SDK refuses before anything is sent, with the typed errors its docs
name; no broker needed, since nothing reaches Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.core.settings import BusSettings
from xbus.producers import publisher as publisher_module
from xbus.producers.demodata import DemoData
from xbus.producers.exceptions import (
    ForeignDataset,
    InvalidBatch,
    InvalidRecord,
    RecordTooLarge,
    UnknownDataset,
)
from xbus.producers.publisher import EventSpec, Publisher

CATALOG = Catalog.load(ROOT / "schemas")


@pytest.fixture
def bureau(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Publisher]:
    # Every schema counts as registered: these checks come before the registry matters.
    monkeypatch.setattr(publisher_module, "registered_schema_id", lambda *_: 1)
    settings = BusSettings(bootstrap_servers="127.0.0.1:1", schemas_dir=ROOT / "schemas")
    publisher = Publisher(
        "market_regulation", system="t", settings=settings, catalog=CATALOG, delivery_timeout=1
    )
    yield publisher
    publisher.close()


def test_an_oversize_record_is_refused_before_it_is_sent_with_its_size_and_the_limit(
    bureau: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[object] = []
    monkeypatch.setattr(publisher_module, "produce", lambda *args, **_: sent.append(args))
    licence = {**DemoData(seed=1).business_licence(), "business_scope": "x" * 1_500_000}

    with pytest.raises(RecordTooLarge) as refused:
        bureau.publish("business_licence", Op.CREATE, after=licence)

    assert refused.value.size > 1_500_000 and refused.value.limit == 1_000_000
    assert "1,000,000 bytes" in str(refused.value) and refused.value.reason == "record_too_large"
    assert sent == []


def test_an_update_without_the_record_before_is_refused(bureau: Publisher) -> None:
    licence = DemoData(seed=2).business_licence()

    with pytest.raises(InvalidRecord) as refused:
        bureau.publish("business_licence", Op.UPDATE, after=licence)
    with pytest.raises(InvalidBatch) as batch:
        bureau.publish_batch("business_licence", [EventSpec(Op.UPDATE, before=licence)])

    assert [e.path for e in refused.value.errors] == ["before"]
    assert "UPDATE event needs the record before the change" in str(refused.value)
    assert [e.path for e in batch.value.errors[0]] == ["after"]


def test_another_departments_dataset_is_foreign_however_it_is_named(bureau: Publisher) -> None:
    with pytest.raises(ForeignDataset, match="belongs to health"):
        bureau.publish("clinic", Op.CREATE, after={})
    with pytest.raises(ForeignDataset, match="belongs to health"):
        bureau.publish("health.clinic", Op.CREATE, after={})
    with pytest.raises(UnknownDataset, match="its datasets: "):
        bureau.publish("health.business_licence", Op.CREATE, after={})


def test_its_own_dataset_named_in_full_is_its_own(bureau: Publisher) -> None:
    licence = DemoData(seed=4).business_licence()

    with pytest.raises(InvalidRecord, match="registered_capital"):
        bureau.publish(
            "market_regulation.business_licence",
            Op.CREATE,
            after={**licence, "registered_capital": "1e30"},
        )


@pytest.mark.parametrize("capital", ["1e30", "1e999999999", 10**30])
def test_a_huge_decimal_is_a_field_error_through_the_sdk(
    bureau: Publisher, capital: object
) -> None:
    licence = {**DemoData(seed=3).business_licence(), "registered_capital": capital}

    with pytest.raises(InvalidRecord) as refused:
        bureau.publish("business_licence", Op.CREATE, after=licence)

    assert [e.path for e in refused.value.errors] == ["after.registered_capital"]
