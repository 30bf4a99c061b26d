import fastavro

from producers.demodata import DemoData
from streams.grant import TAX_BUREAU_LICENCES, apply_grant, view_schema
from xbus.catalog import Catalog
from xbus.envelope import Op, change_event
from xbus.settings import REPO_ROOT


def test_only_granted_fields_leave_and_the_view_schema_encodes_them() -> None:
    catalog = Catalog.load(REPO_ROOT / "schemas")
    dataset = catalog.get("market_regulation", "business_licence")
    licence = DemoData(seed=5).business_licence()
    event = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=Op.UPDATE,
        before=licence,
        after=licence,
        system="test",
    )

    seen = apply_grant(event, TAX_BUREAU_LICENCES)

    for record in (seen["before"], seen["after"]):
        assert list(record) == list(TAX_BUREAU_LICENCES.fields)
        assert "legal_representative_id" not in record
    assert seen["event_id"] == event["event_id"]
    schema = view_schema(dataset, TAX_BUREAU_LICENCES, catalog.envelope)
    view_record = schema["fields"][5]["type"][1]
    assert [f["name"] for f in view_record["fields"]] == list(TAX_BUREAU_LICENCES.fields)
    assert fastavro.validation.validate(seen, fastavro.parse_schema(schema))
