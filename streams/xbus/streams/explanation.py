"""What a grant does with an example event, for ``xbus grants explain``: the engine's own
decision (``decide``, then the view encoded as the engine writes it), and which rule of the
grant decides each field of the dataset."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any, cast

import fastavro

from xbus.core.catalog import Dataset
from xbus.core.envelope import ChangeEvent, record_full_name, with_union_branches
from xbus.core.errors import SerializationError
from xbus.core.serde import WireEncoder
from xbus.core.values import to_json
from xbus.streams.decision import Decision, decide
from xbus.streams.policy import CompiledGrant, ReferenceTables
from xbus.streams.routing import ViewEncoders, read_event, written


@dataclass(frozen=True)
class Explanation:
    """A grant's decision on one event, and the rule behind each field of the dataset."""

    grant: str
    version: int
    decision: Decision
    fields: dict[str, str]
    row_filter: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The explanation as ``xbus grants explain`` prints it."""
        return {
            "grant": self.grant,
            "version": self.version,
            "decision": self.decision.outcome,
            "reason": self.decision.reason,
            "fields": self.fields,
            "row_filter": self.row_filter,
            "received": self.decision.view,
            # The record's key as the subscriber receives it: never the source key.
            "key": None if self.decision.key is None else self.decision.key.decode(),
        }


def field_rules(grant: CompiledGrant) -> dict[str, str]:
    """Which rule of ``grant`` decides each field of its dataset, and each field it adds."""
    g = grant.grant
    rules: dict[str, str] = {}
    for path in grant.dataset.classifications:
        rule = g.fields.get(path)
        parent = next((g.fields[p] for p in g.fields if path.startswith(f"{p}.")), None)
        if rule is None and parent is None and not any(p.startswith(f"{path}.") for p in g.fields):
            rules[path] = "withheld: not granted"
        elif rule is not None and rule.mask is not None:
            rules[path] = f"masked: {rule.mask.type}" + (
                f", renamed to {rule.rename}" if rule.rename else ""
            )
        elif rule is not None and rule.rename:
            rules[path] = f"sent as {rule.rename}"
        elif rule is not None and rule.approved_unmasked:
            rules[path] = f"sent unmasked under approval {rule.approved_unmasked}"
        elif rule is None and parent is None:
            rules[path] = "partly sent: see its fields"
        else:
            rules[path] = "sent as is"
    for name, derived in g.derive.items():
        how = (
            f"masked: {derived.mask.type}"
            if derived.mask
            else f"unmasked under approval {derived.approved_unmasked}"
            if derived.approved_unmasked
            else ""
        )
        rules[name] = f"derived: {derived.cel}" + (f" ({how})" if how else "")
    for name, lookup in g.lookup.items():
        rules[name] = f"looked up in {lookup.table} by {lookup.key}" + (
            f" (unmasked under approval {lookup.approved_unmasked})"
            if lookup.approved_unmasked
            else ""
        )
    return rules


def row_filter_reveals(grant: CompiledGrant) -> str:
    """What the grant's row filter tells the subscriber: which fields it reads (each with its
    classification); whether an event arrives is one bit per event about them."""
    if not grant.grant.rows:
        return "no row filter: every event of the granted operations arrives"
    if not grant.row_reads:
        return "reads no field of the record"
    which = ", ".join(f"{p} ({c})" for p, c in grant.row_reads.items())
    return (
        f"reads {which}: their values are not sent, but whether each event arrives tells one "
        "bit per event about them"
    )


def explain(
    grant: CompiledGrant,
    event: ChangeEvent,
    now: dt.datetime,
    tables: ReferenceTables | None = None,
) -> Explanation:
    """What the grant's subscriber would receive of ``event`` at ``now``: exactly what the
    engine decides and writes (give it the event as decoded, see ``as_decoded``)."""
    decision, _ = written(grant, decide(grant, event, now, tables), ViewEncoders(None))
    return Explanation(
        grant.grant.grant, grant.version, decision, field_rules(grant), row_filter_reveals(grant)
    )


class _EnvelopeDecoder:
    """Reads values written with one dataset's envelope schema, as the engine's decoder
    reads those it finds registered."""

    def __init__(self, dataset: Dataset) -> None:
        self._parsed = fastavro.parse_schema(dataset.envelope)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        assert value is not None
        return cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(value[5:]), self._parsed))


def as_decoded(event: ChangeEvent, dataset: Dataset) -> ChangeEvent:
    """``event`` as the engine sees it: written with the dataset's envelope schema and read
    back as the engine reads it, so each value is what decoding gives (``ts_ms`` a datetime,
    decimals, dates). Raises ``SerializationError`` if the schema does not take it."""
    try:
        value = WireEncoder(0, dataset.envelope).encode(
            with_union_branches(event, record_full_name(dataset.schema))
        )
        return read_event(_EnvelopeDecoder(dataset), value)
    except Exception as exc:
        raise SerializationError(
            "not_encodable",
            f"the event does not fit {dataset.qualified_name}'s envelope schema: {exc}",
        ) from exc


def explain_json(explanation: Explanation) -> str:
    """An explanation as readable, strict JSON: a double that is not a number (``NaN``,
    ``Infinity``, which JSON has no words for) is written as a string."""
    plain = json.loads(to_json(explanation.as_dict()), parse_constant=str)
    return json.dumps(plain, ensure_ascii=False, indent=2, allow_nan=False)
