"""Grant files as the data-sharing office handles them: validated together, applied to the
grants topic (a new version when a grant's content changed), revoked. What a grant does with
an example event: ``xbus.streams.explanation``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from xbus.core.admin import ensure_topics
from xbus.core.catalog import Catalog
from xbus.core.errors import ConfigurationError, XbusError
from xbus.core.producing import Record, produce_and_confirm
from xbus.core.settings import BusSettings
from xbus.core.signatures import load_private_key
from xbus.core.topics import GRANTS_TOPIC
from xbus.core.yaml_files import FileProblem, read_yaml_targets
from xbus.streams.grants import Grant, parse_grant
from xbus.streams.policy import CompiledGrant, check_and_compile
from xbus.streams.policy_records import StoredGrant, grant_key, grant_value
from xbus.streams.state import current_grants, grant_records


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
        result = check_grant(grant, path, catalog, file.line_of)
        if isinstance(result, list):
            problems += result
        else:
            loaded.append(result)
    problems += conflicts(loaded)
    return loaded, problems


def check_grant(
    grant: Grant,
    where: Path,
    catalog: Catalog,
    line_of: Callable[[tuple[Any, ...]], int | None] = lambda _: None,
) -> LoadedGrant | list[FileProblem]:
    """``grant`` checked by the rules every grant meets (the same as ``xbus grants
    validate``), wherever it came from: ready to publish, or every problem, each at
    ``where`` and the line ``line_of`` gives for its key."""
    result = check_and_compile(grant, catalog)
    if isinstance(result, list):
        return [FileProblem(str(where), line_of(loc), message) for loc, message in result]
    notes = tuple(
        FileProblem(str(where), line_of(("rows",)), note) for note in row_filter_notes(result)
    )
    return LoadedGrant(grant, where, notes)


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


def signing_key(settings: BusSettings) -> Ed25519PrivateKey:
    """The office's private key grants are signed with (``XBUS_GRANT_SIGNING_KEY_FILE``);
    ``ConfigurationError`` if none is configured or the file holds none."""
    if settings.grant_signing_key_file is None:
        raise ConfigurationError(
            "no grant was applied: no grant-signing key; set XBUS_GRANT_SIGNING_KEY_FILE to "
            "the office's private key (a PEM file; `xbus stack` makes one): engines enforce "
            "only grants the office signed"
        )
    return load_private_key(settings.grant_signing_key_file)


def apply_grants(settings: BusSettings, catalog: Catalog, targets: Iterable[Path]) -> list[Applied]:
    """Validate the grant files, sign those that changed with the office's key and write them
    to the grants topic with the next version. A grant whose record on the topic is refused
    (unsigned, signed by another key, invalid) counts as changed and is written again. Raises
    ``ConfigurationError`` without a signing key, ``XbusError`` listing every problem, having
    written nothing, or ``Unacknowledged`` if Kafka did not take every new version (apply
    again then)."""
    key = signing_key(settings)
    loaded, problems = load_grants(targets, catalog)
    return publish_grants(settings, catalog, loaded, problems, key)


def publish_grants(
    settings: BusSettings,
    catalog: Catalog,
    loaded: list[LoadedGrant],
    problems: list[FileProblem] | None = None,
    key: Ed25519PrivateKey | None = None,
) -> list[Applied]:
    """Sign the valid grants ``loaded`` that changed and write them to the grants topic with
    the next version; what ``apply_grants`` does once the files are read (the office's
    console calls it with the grant an approval made). ``XbusError`` listing ``problems`` and
    every conflict with a grant in force, having written nothing."""
    key = key or signing_key(settings)
    problems = list(problems or [])
    ensure_topics(settings, {GRANTS_TOPIC: 1}, config={GRANTS_TOPIC: {"cleanup.policy": "compact"}})
    # Judged with this very key: after a rotation, what the old key signed is signed again.
    on_topic = current_grants(settings, catalog, [key.public_key()])
    in_force = {i: StoredGrant(c.grant, c.version) for i, c in on_topic.in_force.items()}
    problems += conflicts(loaded, in_force)
    if problems:
        raise XbusError("no grant was applied:\n" + "\n".join(str(p) for p in problems))
    done: list[Applied] = []
    records: list[Record] = []
    for item in loaded:
        grant_id = item.grant.grant
        previous = in_force.get(grant_id)
        if previous is not None and _same(previous.grant, item.grant):
            done.append(Applied(grant_id, previous.version, False))
            continue
        version = on_topic.versions.get(grant_id, 0) + 1
        records.append(
            Record(GRANTS_TOPIC, grant_value(item.grant, version, key), grant_key(grant_id))
        )
        done.append(Applied(grant_id, version, True))
    if records:
        produce_and_confirm(
            Producer(settings.producer_config()),
            records,
            timeout=30,
            what="the new grant versions; apply again",
        )
    return done


def revoke_grant(settings: BusSettings, grant_id: str) -> bool:
    """Revoke a grant (a tombstone on the grants topic), in force or refused; False if the
    topic holds no record of it. Raises ``Unacknowledged`` if Kafka did not take the
    tombstone (revoke again then)."""
    if grant_id not in grant_records(settings):
        return False
    produce_and_confirm(
        Producer(settings.producer_config()),
        [Record(GRANTS_TOPIC, None, grant_key(grant_id))],
        timeout=30,
        what=f"the revocation of {grant_id}; revoke again",
    )
    return True
