"""What a publisher makes of an event, through the compiled path where it is sure and the
reference path where not, against the reference path alone (validation, ``change_event``,
the engine's checks, fastavro): the same bytes and key, the same errors with the same paths
and messages, the same exceptions, for the catalog's datasets and generated ones, for
every op, with and without the images it requires, ids, times and trace ids of any type."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from tests.support.avro_strategies import record_schemas, records
from tests.support.checkout import SCHEMAS
from xbus.core.catalog import Catalog, Dataset, dataset_from_schema
from xbus.core.envelope import IMAGES, Op, load_envelope
from xbus.producers.dataset_writer import DatasetWriter
from xbus.producers.demodata import DemoData

CATALOG = Catalog.load(SCHEMAS)
SCHEMA_ID = 4242
EVENT_ID = "7d1b2c3a-0f4e-4a5b-8c6d-7e8f9a0b1c2d"
NOW = 1_796_000_000.123  # seconds


@contextmanager
def same_id_and_time() -> Iterator[None]:
    """Both paths draw the same new id and read the same time."""
    with (
        mock.patch("xbus.core.envelope.new_event_id", return_value=EVENT_ID),
        mock.patch("xbus.core.envelope_writer.new_event_id", return_value=EVENT_ID),
        mock.patch("time.time", return_value=NOW),
    ):
        yield


def outcome(make: Any) -> tuple[Any, ...]:
    try:
        made = make()
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    if isinstance(made, list):
        return ("invalid", [(e.path, e.message) for e in made])
    return ("ok", made)


def reference(writer: DatasetWriter, event: dict[str, Any]) -> tuple[Any, ...]:
    def made() -> Any:
        checked, errors = writer.check(
            event["op"],
            event["after"],
            event["before"],
            ts_ms=event["ts_ms"],
            event_id=event["event_id"],
            trace_id=event["trace_id"],
        )
        return errors if errors else writer.encode(checked)

    return outcome(made)


def _check(writer: DatasetWriter, event: dict[str, Any]) -> None:
    args = (
        event["op"],
        event["after"],
        event["before"],
        event["ts_ms"],
        event["event_id"],
        event["trace_id"],
    )
    with same_id_and_time():
        expected = reference(writer, event)
        prepared = outcome(lambda: writer.prepare(*args))
        compiled = writer.write(*args)
    note(f"reference {expected[0]}, compiled {'undecided' if compiled is None else 'wrote'}")
    assert prepared == expected
    if compiled is not None:
        assert expected == ("ok", compiled)


def events(dataset: Dataset, *, native: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Change events of ``dataset``: mostly with the images their op requires."""
    record = records(dataset.schema, native=native)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(st.sampled_from([*Op, "CREATE"]) if not native else st.sampled_from(Op))
        wants = IMAGES[op] if draw(st.integers(0, 9)) else draw(st.tuples(*[st.booleans()] * 2))
        ids = st.one_of(st.none(), st.uuids().map(str))
        times = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
        traces = st.one_of(st.none(), st.text(max_size=8))
        if not native:
            ids = st.one_of(ids, st.just(""), st.text(max_size=4), st.uuids(), st.integers())
            times = st.one_of(
                times, st.integers(), st.booleans(), st.datetimes(timezones=st.just(dt.UTC))
            )
            traces = st.one_of(traces, st.integers(), st.just("\ud800"))
        return {
            "op": op,
            "before": draw(record) if wants[0] else None,
            "after": draw(record) if wants[1] else None,
            "ts_ms": draw(times),
            "event_id": draw(ids),
            "trace_id": draw(traces),
        }

    return build()


def _writer(dataset: Dataset) -> DatasetWriter:
    return DatasetWriter(dataset.department, dataset, SCHEMA_ID, system="licensing", origin="sdk")


def _generated(schema: dict[str, Any]) -> Dataset:
    return dataset_from_schema(
        schema, load_envelope(), where="generated", department="generated", name="generated"
    )


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("dataset", list(CATALOG), ids=lambda d: d.qualified_name)
@_SETTINGS
@given(data=st.data())
def test_the_catalog_datasets(dataset: Dataset, data: st.DataObject) -> None:
    writer = _writer(dataset)
    _check(writer, data.draw(events(dataset, native=False)))
    _check(writer, data.draw(events(dataset, native=True)))


@_SETTINGS
@given(st.data())
def test_generated_datasets(data: st.DataObject) -> None:
    dataset = _generated(data.draw(record_schemas()))
    writer = _writer(dataset)
    _check(writer, data.draw(events(dataset, native=data.draw(st.booleans()))))


def test_demo_events_are_written_by_the_compiled_path() -> None:
    demo = DemoData(seed=9)
    for dataset in CATALOG:
        make = getattr(demo, dataset.name, None)
        if make is None:
            continue
        writer = _writer(dataset)
        for op in Op:
            before, after = (make() if IMAGES[op][0] else None), (make() if IMAGES[op][1] else None)
            event = {
                "op": op,
                "before": before,
                "after": after,
                "ts_ms": None,
                "event_id": None,
                "trace_id": "trace-1",
            }
            with same_id_and_time():
                compiled = writer.write(op, after, before, None, None, "trace-1")
                assert compiled is not None, f"{dataset.qualified_name} {op} left to the reference"
                assert reference(writer, event) == ("ok", compiled)
            event_id, _, value = compiled
            assert event_id == EVENT_ID and value[:5] == b"\x00" + SCHEMA_ID.to_bytes(4, "big")


def test_a_fresh_id_for_every_event() -> None:
    dataset = CATALOG.get("health", "clinic")
    clinic = DemoData(seed=1).clinic()
    written = [_writer(dataset).write(Op.SNAPSHOT, clinic, None, None, None, None) for _ in "ab"]
    ids = [w[0] for w in written if w is not None]
    assert len(set(ids)) == 2 and all(uuid.UUID(i).version == 4 for i in ids)


def test_a_dataset_keyed_by_a_number_takes_the_reference_path() -> None:
    schema = {
        "type": "record",
        "name": "Counted",
        "namespace": "gov.generated",
        "xbus.department": "generated",
        "xbus.business_key": ["number"],
        "xbus.sharing": "none",
        "fields": [{"name": "number", "type": "int", "classification": "public"}],
    }
    writer = _writer(_generated(schema))
    assert writer.write(Op.CREATE, {"number": 7}, None, 1, EVENT_ID, None) is None
    _, key, _ = writer.prepare(Op.CREATE, {"number": 7}, None, 1, EVENT_ID, None)  # type: ignore[misc]
    assert key == b"7"
