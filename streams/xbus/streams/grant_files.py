"""Grant files as the data-sharing office handles them: validated together, applied to the
grants topic (a new version when a grant's content changed), revoked, explained."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.settings import BusSettings
from xbus.core.topics import GRANTS_TOPIC
from xbus.core.yaml_files import FileProblem, read_yaml_targets
from xbus.streams.grants import Grant, parse_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.state import current_grants, grant_value


@dataclass(frozen=True)
class LoadedGrant:
    """A valid grant and the file it came from."""

    grant: Grant
    path: Path


def load_grants(
    targets: Iterable[Path], catalog: Catalog
) -> tuple[list[LoadedGrant], list[FileProblem]]:
    """Every grant under ``targets`` and every problem found: in a file, against the
    catalog, or between files (two grants of one subscriber on one dataset, one id twice)."""
    loaded: list[LoadedGrant] = []
    problems: list[FileProblem] = []
    for file in read_yaml_targets(targets):
        if isinstance(file, FileProblem):
            problems.append(file)
            continue
        path = file.path
        grant = parse_grant(file)
        if isinstance(grant, list):
            problems += grant
            continue
        result = check_and_compile(grant, catalog)
        if isinstance(result, list):
            problems += [
                FileProblem(str(path), file.line_of(loc), message) for loc, message in result
            ]
            continue
        loaded.append(LoadedGrant(grant, path))
    problems += conflicts(loaded)
    return loaded, problems


def conflicts(
    loaded: list[LoadedGrant], stored: dict[str, tuple[Grant, int]] | None = None
) -> list[FileProblem]:
    """Two grants of one subscriber on one dataset, or one id in two files. One grant per
    subscriber and dataset keeps what a subscriber receives decidable by a single file."""
    problems = []
    by_pair: dict[tuple[str, str], str] = {}
    by_id: dict[str, Path] = {}
    for g, _ in (stored or {}).values():
        by_pair[(g.subscriber, g.dataset)] = g.grant
    for item in loaded:
        g = item.grant
        if g.grant in by_id:
            problems.append(
                FileProblem(
                    str(item.path), 1, f"grant id {g.grant} is also used by {by_id[g.grant]}"
                )
            )
        by_id[g.grant] = item.path
        other = by_pair.get((g.subscriber, g.dataset))
        if other is not None and other != g.grant:
            problems.append(
                FileProblem(
                    str(item.path),
                    1,
                    f"{g.subscriber} already has grant {other} on {g.dataset}; "
                    "one subscriber has one grant per dataset: change that grant, or revoke it "
                    "first",
                )
            )
        by_pair[(g.subscriber, g.dataset)] = g.grant
    return problems


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did with one grant."""

    grant: str
    version: int
    changed: bool


def _same(a: Grant, b: Grant) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def apply_grants(settings: BusSettings, catalog: Catalog, targets: Iterable[Path]) -> list[Applied]:
    """Validate the grant files and write those that changed to the grants topic with the
    next version. Raises ``XbusError`` listing every problem, having written nothing."""
    loaded, problems = load_grants(targets, catalog)
    ensure_topics(settings, {GRANTS_TOPIC: 1}, config={GRANTS_TOPIC: {"cleanup.policy": "compact"}})
    stored = current_grants(settings)
    problems += conflicts(loaded, stored)
    if problems:
        raise XbusError("no grant was applied:\n" + "\n".join(str(p) for p in problems))
    producer = Producer(settings.producer_config())
    done = []
    for item in loaded:
        previous = stored.get(item.grant.grant)
        if previous is not None and _same(previous[0], item.grant):
            done.append(Applied(item.grant.grant, previous[1], False))
            continue
        version = previous[1] + 1 if previous else 1
        producer.produce(
            GRANTS_TOPIC, key=item.grant.grant.encode(), value=grant_value(item.grant, version)
        )
        done.append(Applied(item.grant.grant, version, True))
    if producer.flush(30):
        raise XbusError("Kafka did not acknowledge the grants within 30s; apply again")
    return done


def revoke_grant(settings: BusSettings, grant_id: str) -> bool:
    """Revoke a grant (a tombstone on the grants topic); False if it is not in force."""
    if grant_id not in current_grants(settings):
        return False
    producer = Producer(settings.producer_config())
    producer.produce(GRANTS_TOPIC, key=grant_id.encode(), value=None)
    if producer.flush(30):
        raise XbusError("Kafka did not acknowledge the revocation within 30s; try again")
    return True


def explain(
    grant: CompiledGrant, event: dict[str, Any], now: dt.datetime, tables: Any = None
) -> dict[str, Any]:
    """What the grant's subscriber would receive of ``event`` and which rule decided each
    field of the dataset."""
    from xbus.streams.policy import cel_value

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
        rules[name] = f"derived: {derived.cel}"
    for name, lookup in g.lookup.items():
        rules[name] = f"looked up in {lookup.table} by {lookup.key}"
    op = str(event["op"])
    if not g.in_force(now):
        decision = "expired" if g.valid_until and now >= g.valid_until else "denied: not yet valid"
    elif op not in g.operations:
        decision = f"denied: operation {op} not granted"
    elif grant.rows is not None and grant.rows.execute(cel_value(event)) is not True:
        decision = f"filtered: rows ({g.rows}) is false"
    else:
        decision = "delivered"
    received = None
    if decision == "delivered":
        received = {
            **event,
            "before": grant.transform(event.get("before"), op, now, tables),
            "after": grant.transform(event.get("after"), op, now, tables),
        }
    return {
        "grant": g.grant,
        "version": grant.version,
        "decision": decision,
        "fields": rules,
        "received": received,
    }


def explain_json(result: dict[str, Any]) -> str:
    """``explain``'s answer as readable JSON."""
    from xbus.core.values import to_json

    return json.dumps(json.loads(to_json(result)), ensure_ascii=False, indent=2)
