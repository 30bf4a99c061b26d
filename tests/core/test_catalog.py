import io
import json
from pathlib import Path

import fastavro
import pytest

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog, load_dataset
from xbus.core.envelope import Op, change_event, load_envelope
from xbus.core.errors import CatalogError

SCHEMAS = ROOT / "schemas"
ENVELOPE = load_envelope()


def _write(tmp_path: Path, schema: dict) -> Path:  # type: ignore[type-arg]
    path = tmp_path / "health" / "clinic.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema))
    return path


def _schema(**overrides: object) -> dict:  # type: ignore[type-arg]
    return {
        "type": "record",
        "name": "Clinic",
        "xbus.department": "health",
        "xbus.business_key": ["id"],
        "xbus.sharing": "unconditional",
        "fields": [{"name": "id", "type": "string", "classification": "public"}],
        **overrides,
    }


def test_the_repository_catalog_covers_four_departments_and_every_sharing_class() -> None:
    catalog = Catalog.load(SCHEMAS)
    assert len({d.department for d in catalog}) >= 4
    assert {d.sharing for d in catalog} == {"unconditional", "conditional", "none"}
    for dataset in catalog:
        fastavro.parse_schema(dataset.envelope)


def test_an_unclassified_field_is_named_in_the_error(tmp_path: Path) -> None:
    schema = _schema(
        fields=[
            {"name": "id", "type": "string", "classification": "public"},
            {"name": "doctor", "type": "string"},
        ]
    )
    with pytest.raises(CatalogError, match=r"clinic\.avsc.*'doctor' needs a classification"):
        load_dataset(_write(tmp_path, schema), ENVELOPE)


def test_an_unclassified_nested_field_is_named_by_its_path(tmp_path: Path) -> None:
    person = {
        "type": "record",
        "name": "Person",
        "fields": [
            {"name": "name", "type": "string", "classification": "personal"},
            {"name": "phone", "type": ["null", "string"], "default": None},
        ],
    }
    schema = _schema(
        fields=[
            {"name": "id", "type": "string", "classification": "public"},
            {
                "name": "head",
                "type": ["null", person],
                "default": None,
                "classification": "personal",
            },
        ]
    )
    with pytest.raises(CatalogError, match=r"'head\.phone' needs a classification"):
        load_dataset(_write(tmp_path, schema), ENVELOPE)


def test_an_unknown_format_or_compatibility_mode_is_refused(tmp_path: Path) -> None:
    bad_format = _schema(
        fields=[
            {"name": "id", "type": "string", "classification": "public", "xbus.format": "passport"}
        ]
    )
    with pytest.raises(CatalogError, match="'id' has xbus.format 'passport'"):
        load_dataset(_write(tmp_path, bad_format), ENVELOPE)
    with pytest.raises(CatalogError, match="xbus.compatibility must be one of"):
        load_dataset(_write(tmp_path, _schema(**{"xbus.compatibility": "LOOSE"})), ENVELOPE)


def test_a_department_mismatch_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _schema(**{"xbus.department": "tax"}))
    with pytest.raises(CatalogError, match="xbus.department is 'tax'"):
        load_dataset(path, ENVELOPE)


def test_broken_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "health" / "clinic.avsc"
    path.parent.mkdir()
    path.write_text('{\n  "type": "record",\n  "name": }')
    with pytest.raises(CatalogError, match=r"clinic\.avsc:3:"):
        load_dataset(path, ENVELOPE)


def test_an_unknown_dataset_lists_the_known_ones() -> None:
    catalog = Catalog.load(SCHEMAS)
    with pytest.raises(CatalogError, match="known: .*market_regulation.business_licence"):
        catalog.get("market_regulation", "no_such_dataset")
    assert catalog.find("clinic").qualified_name == "health.clinic"


def test_a_change_event_round_trips_through_the_envelope_schema(tmp_path: Path) -> None:
    dataset = load_dataset(_write(tmp_path, _schema()), ENVELOPE)
    schema = fastavro.parse_schema(dataset.envelope)
    event = change_event(
        department="health",
        dataset="clinic",
        op=Op.DELETE,
        after=None,
        before={"id": "c-1"},
        system="test",
    )
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema)
    assert decoded["op"] == "DELETE"
    assert decoded["before"] == {"id": "c-1"}
    assert decoded["after"] is None
    assert str(decoded["event_id"]) == event["event_id"]
