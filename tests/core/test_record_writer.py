"""The compiled record writer against the reference path it replaces (validation, then
fastavro's ``schemaless_writer``), on the catalog's schemas and on generated ones: whatever
it writes is byte for byte what the reference writes, it writes nothing the reference
refuses or fails on, and it leaves nothing valid undecided in the forms it takes directly."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from tests.support.avro_strategies import (
    record_schemas,
    records,
    recursive_schema,
    single_fields,
)
from tests.support.checkout import SCHEMAS
from xbus.core.catalog import Catalog
from xbus.core.record_writer import NotCompiled, Write, compile_record_writer
from xbus.core.validation import RecordValidator
from xbus.producers.demodata import DemoData

CATALOG = Catalog.load(SCHEMAS)
Outcome = tuple[Any, ...]


def reference(schema: dict[str, Any], record: Any) -> Outcome:
    """``("ok", bytes)``, ``("invalid", errors)`` or ``("raised", type, message)``."""
    try:
        conformed, errors = RecordValidator(schema).conform(record, "after")
        if errors:
            return ("invalid", [(e.path, e.message) for e in errors])
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), conformed)
        return ("ok", buffer.getvalue())
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def compiled(write: Write, record: Any) -> bytes | None:
    """The bytes the compiled writer writes, or None if it leaves the record undecided (an
    exception, whatever it is, sends the publisher to the reference path)."""
    out = bytearray()
    try:
        write(record, out)
    except Exception:
        return None
    return bytes(out)


def _check(schema: dict[str, Any], record: Any, *, must_decide: bool) -> None:
    expected = reference(schema, record)
    written = compiled(compile_record_writer(schema), record)
    note(f"reference {expected[0]}, compiled {'undecided' if written is None else 'wrote'}")
    if written is not None:
        assert expected == ("ok", written)
    elif must_decide:
        assert expected[0] != "ok", f"valid record left undecided: {record!r}"


_SLOW = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@_SLOW
@given(st.data())
def test_what_the_compiled_writer_writes_is_what_the_reference_writes(data: st.DataObject) -> None:
    schema = data.draw(record_schemas())
    _check(schema, data.draw(records(schema, native=False)), must_decide=False)


@_SLOW
@given(st.data())
def test_the_compiled_writer_decides_every_record_of_the_forms_it_takes(
    data: st.DataObject,
) -> None:
    schema = data.draw(record_schemas(compiled_shapes_only=True))
    _check(schema, data.draw(records(schema, native=True)), must_decide=True)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.booleans().flatmap(lambda native: single_fields(native=native)))
def test_each_type_one_value_at_a_time(case: tuple[dict[str, Any], Any]) -> None:
    schema, record = case
    _check(schema, record, must_decide=False)


@pytest.mark.parametrize("dataset", list(CATALOG), ids=lambda d: d.qualified_name)
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_catalog_schemas(dataset: Any, data: st.DataObject) -> None:
    _check(dataset.schema, data.draw(records(dataset.schema, native=False)), must_decide=False)
    _check(dataset.schema, data.draw(records(dataset.schema, native=True)), must_decide=True)


def test_the_demo_records_are_written_by_the_compiled_writer() -> None:
    demo = DemoData(seed=5)
    for dataset in CATALOG:
        make = getattr(demo, dataset.name, None)
        if make is None:
            continue
        write = compile_record_writer(dataset.schema)
        for _ in range(50):
            record = make()
            assert reference(dataset.schema, record) == ("ok", compiled(write, record))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_record_that_contains_itself(data: st.DataObject) -> None:
    schema = recursive_schema()
    _check(schema, data.draw(records(schema, native=True)), must_decide=True)


@pytest.mark.parametrize(
    "kind",
    [
        {"type": "int", "logicalType": "time-millis"},
        {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 9},
    ],
)
def test_a_logical_type_it_does_not_know_leaves_the_schema_to_the_reference(
    kind: dict[str, Any],
) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": kind}]}
    with pytest.raises(NotCompiled):
        compile_record_writer(schema)
