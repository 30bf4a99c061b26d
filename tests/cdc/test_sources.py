"""CDC source files: read with every mistake reported by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.errors import ConfigurationError
from xbus.producers.cdc.sources import load_sources, require_sources


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(ROOT / "schemas")


def test_the_demo_source_maps_every_field_of_its_dataset_to_a_column(catalog: Catalog) -> None:
    [source] = require_sources([ROOT / "cdc"], catalog)
    columns = source.column_map(catalog.get("civil_affairs", "marriage_registration"))
    assert columns["party_b.id_number"] == "party_b_id_number"
    assert columns["registered_on"] == "registered_on"
    assert "party_a" not in columns  # a record is mapped through its fields
    assert source.topic == "cdc.civil_affairs.marriage_registration"
    assert source.slot == "xbus_civil_affairs_marriage_registration"


def _problems(tmp_path: Path, catalog: Catalog, text: str) -> list[str]:
    path = tmp_path / "source.yaml"
    path.write_text(text)
    sources, problems = load_sources([path], catalog)
    assert not sources
    return [str(p) for p in problems]


BASE = """department: civil_affairs
dataset: marriage_registration
database:
  host: 127.0.0.1
  name: civil_affairs
  user: cdc
  password_file: cdc.password
table: public.marriage_registrations
publication: xbus_civil_affairs
"""


def test_a_field_the_dataset_lacks_is_named_with_its_line(tmp_path: Path, catalog: Catalog) -> None:
    [problem] = _problems(tmp_path, catalog, BASE + "columns:\n  party_c.name: c_name\n")
    assert problem.endswith(
        "source.yaml:11: civil_affairs.marriage_registration has no field 'party_c.name' to map"
    )


def test_a_password_given_as_a_path_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    [problem] = _problems(tmp_path, catalog, BASE.replace("cdc.password", "/etc/xbus/cdc.password"))
    assert "source.yaml:7: database.password_file" in problem
    assert "XBUS_CDC_SECRETS_DIR" in problem


def test_names_that_are_not_plain_identifiers_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    problems = _problems(
        tmp_path,
        catalog,
        BASE.replace("public.marriage_registrations", "marriages; DROP TABLE x").replace(
            "xbus_civil_affairs", "Pub-1"
        ),
    )
    assert any("source.yaml:8: table: Value error, must be schema.table" in p for p in problems)
    assert any("source.yaml:9: publication" in p for p in problems)


def test_two_fields_from_one_column_and_an_unknown_dataset_are_refused(
    tmp_path: Path, catalog: Catalog
) -> None:
    [problem] = _problems(tmp_path, catalog, BASE + "columns:\n  kind: office_code\n")
    assert "column office_code would feed both" in problem
    [problem] = _problems(tmp_path, catalog, BASE.replace("dataset: marriage", "dataset: divorce"))
    assert "source.yaml:2: no dataset civil_affairs.divorce_registration" in problem


def test_no_source_at_all_says_where_it_looked(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(ConfigurationError, match="no CDC source in .*docs/cdc.md"):
        require_sources([tmp_path], catalog)
