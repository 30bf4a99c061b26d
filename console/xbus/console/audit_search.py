"""The audit trail searched by subscriber, dataset or event id, and its hash chains verified
over the same read: what ``xbus audit verify --from`` checks, for the records the page shows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from xbus.core.settings import BusSettings
from xbus.core.topics import AUDIT_TOPIC
from xbus.streams.audit import AuditEntry, Verdict, verify
from xbus.streams.audit_trail import read_trail

WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7)}


@dataclass(frozen=True)
class AuditQuery:
    """What to look for (each optional) and how far back."""

    subscriber: str = ""
    dataset: str = ""  # department.dataset, or only the dataset's name
    event_id: str = ""
    window: str = "24h"

    @property
    def empty(self) -> bool:
        return not (self.subscriber or self.dataset or self.event_id)


@dataclass(frozen=True)
class AuditMatch:
    """One audit record that matches, with the decisions the query asks about."""

    event_id: str
    department: str
    dataset: str
    op: str
    at: str
    partition: int
    offset: int
    decisions: tuple[dict[str, Any], ...]


def matches(query: AuditQuery, record: dict[str, Any]) -> tuple[dict[str, Any], ...] | None:
    """The decisions of ``record`` the query asks about, or None if it does not match."""
    if query.event_id and record.get("event_id") != query.event_id:
        return None
    if query.dataset:
        qualified = f"{record.get('department')}.{record.get('dataset')}"
        if query.dataset not in (qualified, record.get("dataset")):
            return None
    decisions = [d for d in record.get("decisions", []) if isinstance(d, dict)]
    if query.subscriber:
        decisions = [d for d in decisions if d.get("subscriber") == query.subscriber]
        if not decisions:
            return None
    return tuple(decisions)


def search(
    settings: BusSettings,
    query: AuditQuery,
    now: dt.datetime,
    limit: int = 200,
    topic: str = AUDIT_TOPIC,
) -> tuple[list[AuditMatch], Verdict]:
    """The newest ``limit`` records matching ``query`` in the window, and the verdict on
    every chain read for it (taken from its first record in the window)."""
    since = now - WINDOWS.get(query.window, WINDOWS["24h"])
    found: deque[AuditMatch] = deque(maxlen=limit)

    def looked_at(entries: Iterable[AuditEntry]) -> Iterator[AuditEntry]:
        for entry in entries:
            try:
                record = json.loads(entry.value or b"")
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict):
                decisions = matches(query, record)
                if decisions is not None:
                    found.append(
                        AuditMatch(
                            str(record.get("event_id", "")),
                            str(record.get("department", "")),
                            str(record.get("dataset", "")),
                            str(record.get("op", "")),
                            str(record.get("at", "")),
                            entry.partition,
                            entry.offset,
                            decisions,
                        )
                    )
            yield entry

    verdict = verify(looked_at(read_trail(settings, topic, since=since)), midway=True)
    return sorted(found, key=lambda m: m.at, reverse=True), verdict
