"""Each mask kind, the transformations and the row filters, on the real broker: what a
subscriber's topic actually carries, decoded with stock tools."""

from __future__ import annotations

import decimal
import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.support.components import engine, metrics_port
from tests.support.kafka_reading import read_events
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op
from xbus.producers.demodata import DemoData
from xbus.producers.publisher import Publisher
from xbus.streams.grant_files import apply_grants
from xbus.streams.state import set_reference_table

pytestmark = pytest.mark.broker

HEADER = """\
grant: {grant}
subscriber: {subscriber}
dataset: market_regulation.business_licence
purpose: rules test
legal_basis: test
approval: T-1
valid_from: 2026-01-01T00:00:00+08:00
"""


def _write(folder: Path, subscriber: str, body: str) -> Path:
    path = folder / f"{subscriber}.yaml"
    path.write_text(HEADER.format(grant=subscriber.replace("_", "-"), subscriber=subscriber) + body)
    return path


def test_every_mask_kind_and_transformation_on_the_wire(registered: Bus, tmp_path: Path) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    masked, plain = f"masked_{tag}", f"plain_{tag}"
    table = f"districts_{tag}"
    grants = [
        _write(
            tmp_path,
            masked,
            f"""\
fields:
  credit_code: {{}}
  name: {{mask: {{type: redact, text: "[hidden]"}}}}
  enterprise_type: {{mask: {{type: show_first, n: 2}}}}
  legal_representative: {{mask: {{type: hash}}}}
  legal_representative_id: {{mask: {{type: pseudonym}}, rename: person_key}}
  registered_capital: {{mask: {{type: round, step: 100000}}}}
  established_on: {{mask: {{type: year}}}}
  address: {{mask: {{type: district}}}}
  contact_phone: {{mask: {{type: show_last, n: 4}}}}
  business_scope: {{mask: {{type: nullify}}}}
derive:
  capital_band: {{cel: "record.registered_capital >= 1000000.0 ? 'large' : 'small'"}}
lookup:
  district_name: {{table: {table}, key: district_code}}
""",
        ),
        _write(
            tmp_path,
            plain,
            "fields:\n  credit_code: {}\n  legal_representative_id: {approved_unmasked: T-1}\n",
        ),
    ]
    apply_grants(bus.settings, Catalog.load(bus.settings.schemas_dir), grants)
    set_reference_table(bus.settings, table, {"310115": "浦东新区"})
    licence = {
        **DemoData(seed=51).business_licence(),
        "district_code": "310115",
        "registered_capital": decimal.Decimal("1234567.89"),
        "contact_phone": "13912345678",
        "address": "上海市浦东新区张杨路500号",
    }
    with engine(bus, tmp_path, f"masks-{tag}", port=metrics_port()):
        with Publisher("market_regulation", system="rules-test", settings=bus.settings) as p:
            event_id = p.publish_sync("business_licence", Op.CREATE, after=licence).event_id
        got = read_events(bus.settings, f"deliver.{masked}.business_licence", {event_id}, 90)
        plain_got = read_events(bus.settings, f"deliver.{plain}.business_licence", {event_id}, 30)

    after = got[event_id][1]["after"]
    assert after["credit_code"] == licence["credit_code"]
    assert after["name"] == "[hidden]"
    assert after["enterprise_type"] == licence["enterprise_type"][:2] + "*" * (
        len(licence["enterprise_type"]) - 2
    )
    assert re.fullmatch(r"v1:[0-9a-f]{8}:[0-9a-f]{64}", after["legal_representative"])  # keyed
    assert licence["legal_representative"] not in after["legal_representative"]
    assert "legal_representative_id" not in after and len(after["person_key"]) == 32
    assert after["registered_capital"] == decimal.Decimal("1200000.00")
    assert after["established_on"] == licence["established_on"].year
    assert after["address"] == "上海市浦东新区"
    assert after["contact_phone"] == "*******5678"
    assert after["business_scope"] is None
    assert after["capital_band"] == "large"
    assert after["district_name"] == "浦东新区"
    assert (
        plain_got[event_id][1]["after"]["legal_representative_id"]
        == (licence["legal_representative_id"])
    )


def test_row_filters_on_before_after_and_op(registered: Bus, tmp_path: Path) -> None:
    bus, tag = registered, uuid.uuid4().hex[:6]
    on_after, on_before, creates = f"after_{tag}", f"before_{tag}", f"creates_{tag}"
    grants = [
        _write(
            tmp_path,
            on_after,
            "rows: \"after != null && after.status == 'SUSPENDED'\"\n"
            "fields:\n  credit_code: {}\n  status: {}\n",
        ),
        _write(
            tmp_path,
            on_before,
            "rows: \"before != null && before.status == 'ACTIVE'\"\n"
            "fields:\n  credit_code: {}\n  status: {}\n",
        ),
        _write(tmp_path, creates, "rows: \"op == 'CREATE'\"\nfields:\n  credit_code: {}\n"),
    ]
    apply_grants(bus.settings, Catalog.load(bus.settings.schemas_dir), grants)
    licence = DemoData(seed=52).business_licence()
    suspended = {**licence, "status": "SUSPENDED"}
    with Publisher("market_regulation", system="rules-test", settings=bus.settings) as p:
        created = p.publish_sync("business_licence", Op.CREATE, after=licence).event_id
        updated = p.publish_sync(
            "business_licence", Op.UPDATE, before=licence, after=suspended
        ).event_id
        deleted = p.publish_sync("business_licence", Op.DELETE, before=suspended).event_id
    ids = {created, updated, deleted}
    with engine(bus, tmp_path, f"rows-{tag}", port=metrics_port()):
        # The three events share a key, so they are processed in order: once the last one
        # reached a subscriber, every decision was made.
        assert read_events(bus.settings, f"deliver.{on_before}.business_licence", {updated}, 90)
        seen = {
            name: read_events(bus.settings, f"deliver.{name}.business_licence", ids, 10)
            for name in (on_after, on_before, creates)
        }
    seen_after, seen_before, seen_creates = seen[on_after], seen[on_before], seen[creates]

    assert seen_after.keys() == {updated}
    assert seen_before.keys() == {updated}
    assert seen_creates.keys() == {created}
