"""The catalogue's view of a dataset's schema versions: what each added, and which grants a
new personal or sensitive field touches."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import Bus
from tests.console.conftest import Served
from tests.console.test_requests import _logged_in
from xbus.console.accounts import Role
from xbus.console.catalogue import fields_of, schema_versions, search, type_label
from xbus.core.catalog import Catalog, dataset_from_schema
from xbus.core.contracts import register_catalog
from xbus.core.envelope import load_envelope
from xbus.core.serde import registry_client


def _venue(department: str, extra: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Venue",
        "namespace": f"gov.{department}",
        "doc": "A venue.",
        "xbus.department": department,
        "xbus.business_key": ["venue_id"],
        "xbus.sharing": "conditional",
        "fields": [
            {"name": "venue_id", "type": "string", "classification": "public", "doc": "Id."},
            {"name": "name", "type": "string", "classification": "public", "doc": "Name."},
            *extra,
        ],
    }


def test_a_new_version_that_adds_a_personal_field_is_shown_as_such(registered: Bus) -> None:
    department = f"test_{uuid.uuid4().hex[:8]}"
    envelope = load_envelope()
    registry = registry_client(registered.settings)
    first = dataset_from_schema(
        _venue(department, []), envelope, where="v1", department=department, name="venue"
    )
    manager = {
        "name": "manager_phone",
        "type": ["null", "string"],
        "default": None,
        "classification": "personal",
        "doc": "The manager's phone.",
    }
    second = dataset_from_schema(
        _venue(department, [copy.deepcopy(manager)]),
        envelope,
        where="v2",
        department=department,
        name="venue",
    )
    register_catalog(Catalog([first], envelope), registry)
    register_catalog(Catalog([second], envelope), registry)
    versions = schema_versions(registry, second)
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].added == ()
    assert [(f.path, f.classification) for f in versions[1].added_protected] == [
        ("manager_phone", "personal")
    ]


def test_fields_read_as_a_person_reads_them_and_search_finds_by_field_and_department() -> None:
    catalog = Catalog.load(Path("schemas"))
    marriage = catalog.get("civil_affairs", "marriage_registration")
    entries = {f.path: f for f in fields_of(marriage.schema)}
    assert entries["party_a.birth_date"].type == "date"
    assert entries["party_a.household_district_code"].type == "string?"
    assert entries["kind"].type == "enum RegistrationKind"
    # The second party is a Party too, named again: its fields are listed as the first's.
    assert entries["party_b.id_number"].type == "string"
    assert type_label({"type": "array", "items": "string"}) == "array of string"
    assert [d.qualified_name for d in search(catalog, "id_number civil_affairs")] == [
        "civil_affairs.adoption_registration",  # adopter_id_number
        "civil_affairs.marriage_registration",  # party_a.id_number
    ]
    assert search(catalog, "legal_representative_id")[0].name == "business_licence"
    assert search(catalog, "no such words anywhere") == []


def test_the_catalogue_page_searches(console_server: Served) -> None:
    viewer = _logged_in(console_server, Role.SUBSCRIBER, "tax_bureau")
    page = viewer.get("/catalogue?q=legal_representative_id")
    assert "/catalogue/market_regulation/business_licence" in page.text
    assert "/catalogue/health/clinic" not in page.text
    everything = viewer.get("/catalogue")
    assert "/catalogue/health/clinic" in everything.text
