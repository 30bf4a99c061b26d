"""Grant files as the data-sharing office handles them: validated together, applied to the
grants topic (a new version when a grant's content changed), revoked. What a grant does with
an example event: ``xbus.streams.explanation``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.errors import XbusError
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.settings import BusSettings
from xbus.core.topics import GRANTS_TOPIC
from xbus.core.yaml_files import FileProblem, read_yaml_targets
from xbus.streams.grants import Grant, parse_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import StoredGrant, grant_key, grant_value
from xbus.streams.state import current_grants


@dataclass(frozen=True)
class LoadedGrant:
    """A valid grant, the file it came from, and what the office should know of it though
    it is valid (what its row filter reveals)."""

    grant: Grant
    path: Path
    notes: tuple[FileProblem, ...] = ()


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
        notes = tuple(
            FileProblem(str(path), file.line_of(("rows",)), note)
            for note in row_filter_notes(result)
        )
        loaded.append(LoadedGrant(grant, path, notes))
    problems += conflicts(loaded)
    return loaded, problems


def row_filter_notes(grant: CompiledGrant) -> list[str]:
    """What a grant's row filter tells its subscriber of personal or sensitive fields: which
    events arrive is one bit per event about each field it reads."""
    protected = {p: c for p, c in grant.row_reads.items() if c in ("personal", "sensitive")}
    if not protected:
        return []
    which = ", ".join(f"{p} ({c})" for p, c in protected.items())
    return [
        f"rows reads {which}: the subscriber never receives these values, but whether each "
        "event arrives tells it one bit per event about them"
    ]


def conflicts(
    loaded: list[LoadedGrant], stored: Mapping[str, StoredGrant] | None = None
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
    next version. Raises ``XbusError`` listing every problem, having written nothing, or
    ``Unacknowledged`` if Kafka did not take every new version (apply again then)."""
    loaded, problems = load_grants(targets, catalog)
    ensure_topics(settings, {GRANTS_TOPIC: 1}, config={GRANTS_TOPIC: {"cleanup.policy": "compact"}})
    stored = current_grants(settings)
    problems += conflicts(loaded, stored)
    if problems:
        raise XbusError("no grant was applied:\n" + "\n".join(str(p) for p in problems))
    done: list[Applied] = []
    records: list[Record] = []
    for item in loaded:
        previous = stored.get(item.grant.grant)
        if previous is not None and _same(previous.grant, item.grant):
            done.append(Applied(item.grant.grant, previous.version, False))
            continue
        version = previous.version + 1 if previous else 1
        records.append(
            Record(GRANTS_TOPIC, grant_value(item.grant, version), grant_key(item.grant.grant))
        )
        done.append(Applied(item.grant.grant, version, True))
    if records:
        produce_and_confirm(
            Producer(settings.producer_config()),
            records,
            timeout=30,
            what="the new grant versions; apply again",
        )
    return done


def revoke_grant(settings: BusSettings, grant_id: str) -> bool:
    """Revoke a grant (a tombstone on the grants topic); False if it is not in force. Raises
    ``Unacknowledged`` if Kafka did not take the tombstone (revoke again then)."""
    if grant_id not in current_grants(settings):
        return False
    produce_and_confirm(
        Producer(settings.producer_config()),
        [Record(GRANTS_TOPIC, None, grant_key(grant_id))],
        timeout=30,
        what=f"the revocation of {grant_id}; revoke again",
    )
    return True
