"""The envelope check the engine, the Publisher SDK and the gateway share: an event must
belong to its topic, carry the images its op requires, and be keyed by its business key."""

from __future__ import annotations

import pytest

from tests.support.checkout import ROOT
from xbus.core.catalog import Catalog
from xbus.core.envelope import (
    ChangeEvent,
    EnvelopeRejected,
    Op,
    change_event,
    check_event,
    require_valid_event,
)
from xbus.producers.demodata import DemoData

CATALOG = Catalog.load(ROOT / "schemas")
CLINICS = CATALOG.get("health", "clinic")
LICENCES = CATALOG.get("market_regulation", "business_licence")


def _event(op: Op = Op.CREATE, **changes: object) -> ChangeEvent:
    licence = DemoData(seed=5).business_licence()
    event = change_event(
        department="market_regulation",
        dataset="business_licence",
        op=op,
        after=None if op is Op.DELETE else licence,
        before=licence if op in (Op.UPDATE, Op.DELETE) else None,
        system="t",
    )
    return {**event, **changes}  # type: ignore[typeddict-item]


def _key(event: ChangeEvent) -> bytes:
    return LICENCES.key_of(event["after"] or event["before"] or {}).encode()


@pytest.mark.parametrize("op", list(Op))
def test_a_well_formed_event_on_its_own_topic_passes(op: Op) -> None:
    event = _event(op)

    assert check_event(event, LICENCES.topic, _key(event), LICENCES) is None


def test_an_envelope_naming_another_department_than_its_topic_is_wrong_department() -> None:
    event = _event(department="health")

    problem = check_event(event, LICENCES.topic, _key(event), LICENCES)

    assert problem is not None and problem.reason == "wrong_department"
    assert "'health'" in problem.detail and LICENCES.topic in problem.detail


def test_an_envelope_naming_another_dataset_than_its_topic_is_wrong_dataset() -> None:
    event = _event(dataset="clinic")

    problem = check_event(event, LICENCES.topic, _key(event), LICENCES)

    assert problem is not None and problem.reason == "wrong_dataset"


@pytest.mark.parametrize(
    ("op", "before", "after", "field"),
    [
        (Op.UPDATE, None, None, "before"),
        (Op.UPDATE, None, "licence", "before"),
        (Op.UPDATE, "licence", None, "after"),
        (Op.CREATE, None, None, "after"),
        (Op.SNAPSHOT, None, None, "after"),
        (Op.DELETE, None, None, "before"),
    ],
)
def test_an_op_without_the_images_it_requires_is_missing_image(
    op: Op, before: str | None, after: str | None, field: str
) -> None:
    licence = DemoData(seed=6).business_licence()
    images = {"licence": licence, None: None}
    event = _event(op, before=images[before], after=images[after])

    problem = check_event(event, LICENCES.topic, None, None)

    assert problem is not None and (problem.reason, problem.field) == ("missing_image", field)


def test_an_image_the_op_does_not_carry_is_unexpected() -> None:
    event = _event(Op.DELETE, after=DemoData(seed=7).business_licence())

    problem = check_event(event, LICENCES.topic, _key(event), LICENCES)

    assert problem is not None and (problem.reason, problem.field) == ("unexpected_image", "after")


def test_a_key_other_than_the_business_key_is_a_mismatch_and_is_not_quoted() -> None:
    event = _event()

    problem = check_event(event, LICENCES.topic, b"someone-else", LICENCES)

    assert problem is not None and problem.reason == "key_mismatch"
    assert "someone-else" not in str(problem) and "credit_code" in str(problem)
    assert check_event(event, LICENCES.topic, None, LICENCES) is not None


def test_an_unknown_op_is_refused() -> None:
    event: ChangeEvent = {**_event(), "op": "MERGE"}

    problem = check_event(event, LICENCES.topic, None, None)

    assert problem is not None and problem.reason == "unknown_op"


def test_the_raising_form_is_a_serialization_error_with_the_reason() -> None:
    with pytest.raises(EnvelopeRejected) as raised:
        require_valid_event(_event(department="health"), LICENCES.topic, None, None)

    assert raised.value.reason == "wrong_department"
