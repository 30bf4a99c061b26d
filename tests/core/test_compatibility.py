import copy

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.compatibility import incompatibilities, mode_problems

CATALOG = Catalog.load(ROOT / "schemas")


def _vaccination() -> dict:  # type: ignore[type-arg]
    return copy.deepcopy(CATALOG.find("vaccination_record").schema)


def _rules(mode: str, new: dict, old: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    return {
        ("new" if d.startswith("the new") else "older", i.path, i.rule)
        for d, i in mode_problems(mode, new, old)
    }


def test_every_schema_reads_itself() -> None:
    for dataset in CATALOG:
        assert incompatibilities(dataset.schema, dataset.schema) == []
        assert incompatibilities(dataset.envelope, dataset.envelope) == []


def test_adding_an_optional_field_keeps_full_compatibility() -> None:
    old, new = _vaccination(), _vaccination()
    new["fields"].append(
        {"name": "note", "type": ["null", "string"], "default": None, "classification": "internal"}
    )
    assert mode_problems("FULL", new, old) == []


def test_each_broken_rule_is_named_with_its_field() -> None:
    old, new = _vaccination(), _vaccination()
    person = new["fields"][1]["type"]
    person["fields"][1]["type"] = "int"  # id_number: string -> int
    person["fields"][3]["type"]["symbols"].remove("UNKNOWN")  # sex
    new["fields"].append({"name": "site", "type": "string", "classification": "public"})
    new["fields"][2]["type"]["fields"].pop(0)  # vaccine.code removed

    assert _rules("FULL", new, old) == {
        ("new", "person.id_number", "type_changed"),
        ("new", "person.sex", "enum_symbol_removed"),
        ("new", "site", "field_without_default"),
        ("older", "person.id_number", "type_changed"),
        ("older", "vaccine.code", "field_without_default"),
    }
    assert {r for r in _rules("BACKWARD", new, old)} == {
        r for r in _rules("FULL", new, old) if r[0] == "new"
    }
    assert mode_problems("NONE", new, old) == []


def test_promotions_are_allowed_one_way_and_decimal_scale_is_fixed() -> None:
    old = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "n", "type": "int"},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            },
        ],
    }
    new = copy.deepcopy(old)
    new["fields"][0]["type"] = "long"
    new["fields"][1]["type"]["scale"] = 3
    assert [(i.path, i.rule) for i in incompatibilities(new, old)] == [
        ("amount", "decimal_changed")
    ]
    assert ("n", "type_changed") in [(i.path, i.rule) for i in incompatibilities(old, new)]
