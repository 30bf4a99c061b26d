"""What validation refuses so that no withheld value reaches a subscriber through an
expression, a lookup or the view's shape, and so that a grant that validates does not fail on
well-formed events: each case found by trying grants as a new user would."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from tests.support.checkout import ROOT
from tests.support.grant_helpers import HEADER, compile_grant, grant_problems, load_grant
from xbus.core.catalog import Catalog
from xbus.core.envelope import Op, change_event
from xbus.producers.demodata import DemoData
from xbus.streams.decision import decide
from xbus.streams.explanation import explain
from xbus.streams.expression_check import check_expression, event_variables
from xbus.streams.grant_files import load_grants

CATALOG = Catalog.load(ROOT / "schemas")
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
VACCINATIONS = HEADER.replace("market_regulation.business_licence", "health.vaccination_record")


def _problems(tmp_path: Path, body: str, header: str = HEADER) -> list[str]:
    return grant_problems(tmp_path, body, CATALOG, header)


@pytest.mark.parametrize(
    "cel",
    [
        "record.legal_representative_id",
        "'id:' + record.legal_representative_id",
        "record['legal_representative_id']",
        "string(dyn(record).name)",  # the record through dyn: every field
        "[record][0].name",  # the record in a list: every field
        "{'k': record}.k.name",  # the record in a map: every field
        "[record.legal_representative_id].map(x, x + '!')[0]",
        "record.legal_representative_id.startsWith('31') ? 'sh' : 'other'",
    ],
)
def test_a_derived_field_that_reads_a_sensitive_field_needs_a_mask_or_an_approval(
    tmp_path: Path, cel: str
) -> None:
    body = f"""\
        fields:
          legal_representative_id: {{mask: {{type: hash}}}}
        derive:
          copy: {{cel: "{cel}"}}
        """
    [problem] = _problems(tmp_path, body)
    assert problem.startswith("11: derive.copy: reads ")
    assert "legal_representative_id (sensitive)" in problem
    assert "approved_unmasked" in problem
    approved = body.replace('"}', '", approved_unmasked: T-9}')
    assert _problems(tmp_path, approved) == []
    masked = body.replace('"}', '", mask: {type: pseudonym}}')
    assert _problems(tmp_path, masked) == []
    shown = body.replace('"}', '", mask: {type: show_last, n: 2}}')
    [problem] = _problems(tmp_path, shown)  # how much of the ID would show, none can say
    assert problem.startswith("11: derive.copy: reads sensitive fields, which a derived value")


def test_a_personal_phone_concatenated_is_still_personal(tmp_path: Path) -> None:
    [problem] = _problems(
        tmp_path,
        """\
        fields:
          credit_code: {}
        derive:
          tel: {cel: "'tel:' + (record.contact_phone != null ? record.contact_phone : '')"}
        """,
    )
    assert "contact_phone (personal)" in problem and "as personal as what it reads" in problem


def test_a_nested_sensitive_field_in_a_derived_field(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        fields:
          record_id: {}
        derive:
          id: {cel: "record.person.id_number"}
          whole: {cel: "string(record.person.id_number.size())", type: string}
          public: {cel: "record.vaccine.name", type: string}
        """,
        VACCINATIONS,
    )
    assert [p.split(":")[0] for p in problems] == ["11", "12"]
    assert "person.id_number (sensitive)" in problems[0]


def test_a_masked_derived_value_leaves_masked(tmp_path: Path) -> None:
    path = tmp_path / "grant.yaml"
    path.write_text(
        HEADER
        + textwrap.dedent(
            """\
            fields:
              credit_code: {}
            derive:
              id_key: {cel: "record.legal_representative_id", mask: {type: redact, text: "x"}}
            """
        )
    )
    grant = compile_grant(load_grant(path), CATALOG)
    licence = DemoData(seed=3).business_licence()
    event = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=Op.CREATE,
        after=licence,
        system="t",
    )
    view = decide(grant, event, NOW).view
    assert view is not None and view["after"] is not None
    assert view["after"]["id_key"] == "x"
    assert explain(grant, event, NOW).fields["id_key"] == (
        "derived: record.legal_representative_id (masked: redact)"
    )


def test_macros_bind_their_own_variables(tmp_path: Path) -> None:
    assert (
        _problems(
            tmp_path,
            """\
            rows: "[after, before].exists(r, r != null && r.status == 'ACTIVE')"
            fields:
              credit_code: {}
            derive:
              words: {cel: "['a', 'b'].map(w, w + record.name).filter(x, size(x) > 1)[0]"}
              all: {cel: "[1, 2].all(record, record > 0)", type: boolean}
              one: {cel: "[1, 2].exists_one(n, n == 2)", type: boolean}
            """,
        )
        == []
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'rows: "after.no_such_field == 1"\nfields:\n  credit_code: {}\n',
            "8: rows: no field 'no_such_field' in the record (its fields: credit_code, name,",
        ),
        (
            'rows: "1 + 1"\nfields:\n  credit_code: {}\n',
            "8: rows: a row filter gives a bool; this one gives a int",
        ),
        (
            'rows: "after.name + 1 == 2"\nfields:\n  credit_code: {}\n',
            "8: rows: no such overload: string + int",
        ),
        (
            'fields:\n  credit_code: {}\nderive:\n  n: {cel: "record.name", type: int}\n',
            "11: derive.n: the expression gives a string, but the field is declared int",
        ),
        (
            "fields:\n  credit_code: {}\nderive:\n"
            '  n: {cel: "record.contact_phone", nullable: false, approved_unmasked: T-1}\n',
            "11: derive.n: the expression may give null (string or null), but the field is "
            "declared nullable: false",
        ),
        (
            "fields:\n  credit_code: {}\nderive:\n"
            "  n: {cel: \"'tel:' + record.contact_phone\", nullable: false, mask: {type: hash}}\n",
            "11: derive.n: the expression may give null (string or null), but the field is "
            "declared nullable: false",  # + raises on a null phone: null, at best
        ),
        (
            'fields:\n  credit_code: {}\nderive:\n  n: {cel: "dyn(record.name)"}\n',
            "11: derive.n: its type is known only when it runs (dyn)",
        ),
        (
            'fields:\n  credit_code: {}\nderive:\n  n: {cel: "record.name.trim()"}\n',
            "11: derive.n: no function trim()",
        ),
    ],
)
def test_expressions_are_typed_against_the_schema(tmp_path: Path, body: str, expected: str) -> None:
    [problem] = _problems(tmp_path, body)
    assert problem.startswith(expected), problem


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "fields:\n  credit_code: {}\n  name: {rename: district_code}\n  district_code: {}\n",
            "11: fields.district_code: the view already has a field 'district_code'",
        ),
        (
            "fields:\n  credit_code: {}\n  name: {rename: credit_code}\n",
            "10: fields.name: the view already has a field 'credit_code'",
        ),
        (
            "fields:\n  credit_code: {}\nderive:\n"
            "  name: {cel: \"'x'\"}\n  status: {cel: \"'y'\"}\n"
            "lookup:\n  name: {table: districts, key: district_code}\n",
            "",
        ),
        (
            "fields:\n  credit_code: {}\nderive:\n  bad-name: {cel: \"'x'\"}\n",
            "11: derive.bad-name: 'bad-name' is not a field name",
        ),
        (
            "fields:\n  credit_code: {}\nlookup:\n  1st: {table: districts, key: district_code}\n",
            "11: lookup.1st: '1st' is not a field name",
        ),
    ],
)
def test_no_two_delivered_fields_share_a_name(tmp_path: Path, body: str, expected: str) -> None:
    problems = _problems(tmp_path, body)
    if expected:
        assert [p for p in problems if p.startswith(expected)], problems
    else:  # a derived field and a lookup both named `name`: refused once, where it repeats
        assert problems == ["14: lookup.name: the view already has a field 'name'"]


def test_nested_renames_clash_within_their_record(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        fields:
          record_id: {}
          person.sex: {approved_unmasked: T-1, rename: district_code}
          person.district_code: {approved_unmasked: T-1}
        """,
        VACCINATIONS,
    )
    assert problems == [
        "11: fields.person.district_code: the view already has a field 'district_code' in person"
    ]


def test_a_lookup_keyed_by_a_sensitive_field_needs_an_approval(tmp_path: Path) -> None:
    body = """\
        fields:
          credit_code: {}
        lookup:
          who: {table: residents, key: legal_representative_id}
        """
    [problem] = _problems(tmp_path, body)
    assert problem.startswith("11: lookup.who: its key legal_representative_id is sensitive")
    assert _problems(tmp_path, body.replace("_id}", "_id, approved_unmasked: T-2}")) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "fields:\n  contact_phone: {approved_unmasked: ''}\n",
            "9: fields.contact_phone.approved_unmasked: name the approval: blank text names none",
        ),
        (
            'fields:\n  contact_phone: {approved_unmasked: "  "}\n',
            "9: fields.contact_phone.approved_unmasked: name the approval: blank text names none",
        ),
        (
            "operations: []\nfields:\n  credit_code: {}\n",
            "8: operations: name at least one of CREATE, UPDATE, DELETE, SNAPSHOT",
        ),
        (
            "fields:\n  registered_capital: {mask: {type: round, step: 1e-30}}\n",
            "9: fields.registered_capital: round step 1E-30 is finer than the field's 2 decimal",
        ),
        (
            "fields:\n  legal_representative_id: {mask: {type: district}}\n",
            "9: fields.legal_representative_id: mask district applies to an address or a "
            "division code",
        ),
        (
            "fields:\n  credit_code: yes\n",
            "9: fields.credit_code: give a mapping of keys here",
        ),
    ],
)
def test_what_an_outsider_found_is_refused_plainly(
    tmp_path: Path, body: str, expected: str
) -> None:
    problems = _problems(tmp_path, body)
    assert [p for p in problems if p.startswith(expected)], problems
    assert not [p for p in problems if "Value error" in p or "instance of" in p]


def test_show_first_and_last_never_show_a_whole_value(tmp_path: Path) -> None:
    path = tmp_path / "grant.yaml"
    path.write_text(
        HEADER
        + "fields:\n  legal_representative_id: {mask: {type: show_last, n: 18}}\n"
        + "  contact_phone: {mask: {type: show_first, n: 99}}\n"
    )
    grant = compile_grant(load_grant(path), CATALOG)
    licence = {**DemoData(seed=5).business_licence(), "contact_phone": "13912345678"}
    event = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=Op.CREATE,
        after=licence,
        system="t",
    )
    view = decide(grant, event, NOW).view
    assert view is not None and view["after"] is not None
    assert view["after"]["legal_representative_id"] == "*" + licence["legal_representative_id"][1:]
    assert view["after"]["contact_phone"] == "1391234567*"


def test_a_date_that_is_no_date_is_a_grant_error_at_its_line(tmp_path: Path) -> None:
    header = HEADER.replace("2026-01-01T00:00:00+08:00", "2026-13-01T00:00:00+08:00")
    [problem] = _problems(tmp_path, "fields:\n  credit_code: {}\n", header)
    assert problem.startswith("7: not valid YAML: 2026-13-01T00:00:00+08:00 is not a date")


def test_a_key_given_twice_is_refused_at_its_line(tmp_path: Path) -> None:
    [problem] = _problems(
        tmp_path, "fields:\n  credit_code: {}\n  credit_code: {mask: {type: hash}}\n"
    )
    assert problem == "10: not valid YAML: the key 'credit_code' is given twice"


def test_a_file_not_in_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "grant.yaml"
    path.write_bytes(HEADER.encode() + "fields:\n  credit_code: {}\n# 营业执照\n".encode("gbk"))
    _, problems = load_grants([path], CATALOG)
    assert [str(p) for p in problems] == [
        f"{path}:10: not UTF-8 text (byte 0xd5); save the file as UTF-8"
    ]


def test_a_file_named_twice_is_read_once_and_yml_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "grant.yml"
    path.write_text(HEADER + "fields:\n  credit_code: {}\n")
    loaded, problems = load_grants([path, tmp_path, path], CATALOG)
    assert problems == [] and [g.path for g in loaded] == [path]


def test_validation_says_what_a_row_filter_reveals(tmp_path: Path) -> None:
    path = tmp_path / "grant.yaml"
    path.write_text(
        HEADER
        + "rows: \"after != null && after.legal_representative_id.startsWith('310115')\"\n"
        + "fields:\n  credit_code: {}\n"
    )
    [loaded], problems = load_grants([path], CATALOG)
    assert problems == []
    assert [str(n) for n in loaded.notes] == [
        f"{path}:8: rows reads legal_representative_id (sensitive): the subscriber never "
        "receives these values, but whether each event arrives tells it one bit per event "
        "about them"
    ]
    explained = explain(
        compile_grant(loaded.grant, CATALOG),
        change_event(
            department="market_regulation",
            dataset="business_licence",
            op=Op.CREATE,
            after=DemoData(seed=2).business_licence(),
            system="t",
        ),
        NOW,
    )
    assert explained.as_dict()["row_filter"].startswith(
        "reads legal_representative_id (sensitive): their values are not sent, but whether"
    )


def test_messages_speak_of_the_grant_not_of_the_validator(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        valid_until: soon
        colour: red
        fields:
          credit_code: {mask: {type: show_last, n: -1}}
          status: {approved_unmasked: 5}
        """,
        HEADER.replace("legal_basis: none\n", ""),
    )
    assert problems[0] == "1: legal_basis: missing: every grant gives it"
    assert "8: colour: unknown key here (see docs/grants.md for the keys a grant has)" in problems
    for wording in ("Input should", "Field required", "Extra inputs", "Value error", "instance"):
        assert not [p for p in problems if wording in p], problems


@pytest.mark.parametrize(
    ("rows", "operations", "valid"),
    [
        ("after.status == 'ACTIVE'", "[CREATE, UPDATE, DELETE]", False),  # after null on DELETE
        ("after.status == 'ACTIVE'", "[CREATE, UPDATE]", True),
        ("after != null && after.status == 'ACTIVE'", "[CREATE, DELETE]", True),
        ("after == null || after.status == 'ACTIVE'", "[CREATE, DELETE]", True),
        ("(after != null ? after : before).status == 'ACTIVE'", "[CREATE, DELETE]", True),
        ("before.status == 'ACTIVE'", "[UPDATE, DELETE]", True),
        ("before.status == 'ACTIVE'", "[CREATE, UPDATE]", False),  # before null on CREATE
        ("after.contact_phone.startsWith('139')", "[CREATE]", False),  # an optional field
        ("after.contact_phone != null && after.contact_phone.startsWith('139')", "[CREATE]", True),
    ],
)
def test_a_row_filter_that_would_fail_on_a_well_formed_event_is_refused(
    tmp_path: Path, rows: str, operations: str, valid: bool
) -> None:
    body = f'operations: {operations}\nrows: "{rows}"\nfields:\n  credit_code: {{}}\n'
    problems = _problems(tmp_path, body)
    assert problems == [] if valid else problems[0].startswith("9: rows: may fail"), problems


def test_what_an_expression_reads_is_resolved_to_fields() -> None:
    dataset = CATALOG.get("market_regulation", "business_licence")
    variables = event_variables(dataset)
    for rows, reads in (
        ("after != null && after.status == 'ACTIVE'", {"status"}),
        ("(after != null ? after : before).registered_capital >= 1.0", {"registered_capital"}),
        ("after.contact_phone != null", {"contact_phone"}),
        ("[1, 2].exists(after, after > 1)", set()),  # the macro's own `after`
        ("dyn(after).status == 'ACTIVE'", {""}),  # the whole record: every field
        ("[after][0].status == 'ACTIVE'", {""}),
        ("after[op] == 1", {""}),
        ("after == before", {""}),
    ):
        checked = check_expression(rows, variables)
        assert checked.errors == () and set(checked.reads) == reads, (rows, checked)
