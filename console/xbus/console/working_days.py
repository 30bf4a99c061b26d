"""Working days in Shanghai, for the deadlines of sharing requests.

A deadline of N working days ends at midnight (Shanghai time) after the Nth working day that
follows the day the clock started: a request filed on a Monday with two working days to go
must be answered by the end of Wednesday. Saturdays and Sundays are rest days, except the
weekend days the State Council's holiday notice makes working days (调休); the notice's
public holidays are rest days. The office keeps both lists in a calendar file, one per year
as the notice comes out::

    # 国务院办公厅关于2027年部分节假日安排的通知
    holidays: [2027-01-01, ...]
    working_days: [2027-02-06, ...]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from xbus.console.errors import ConsoleError

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Calendar:
    """Which days are working days: weekdays, less ``holidays``, plus ``working_days``."""

    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    working_days: frozenset[dt.date] = field(default_factory=frozenset)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.working_days:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def deadline(self, start: dt.datetime, days: int) -> dt.datetime:
        """The end of the ``days``-th working day after the day of ``start`` (aware)."""
        day = start.astimezone(SHANGHAI).date()
        counted = 0
        while counted < days:
            day += dt.timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=SHANGHAI)
        return end.astimezone(dt.UTC)


def load_calendar(path: Path | None) -> Calendar:
    """The calendar in ``path`` (none: weekdays only). ``ConsoleError`` naming the file and
    the entry that is not a date."""
    if path is None:
        return Calendar()
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConsoleError(f"{path}: cannot read the working-day calendar: {exc}") from exc
    if not isinstance(content, dict) or set(content) - {"holidays", "working_days"}:
        raise ConsoleError(f"{path}: a calendar has only the lists holidays and working_days")
    lists: dict[str, frozenset[dt.date]] = {}
    for key in ("holidays", "working_days"):
        days = content.get(key) or []
        bad = [d for d in days if not isinstance(d, dt.date) or isinstance(d, dt.datetime)]
        if not isinstance(days, list) or bad:
            raise ConsoleError(
                f"{path}: {key} is a list of dates like 2027-01-01; not {bad[:1] or days!r}"
            )
        lists[key] = frozenset(days)
    both = lists["holidays"] & lists["working_days"]
    if both:
        raise ConsoleError(f"{path}: {min(both)} is both a holiday and a working day")
    return Calendar(lists["holidays"], lists["working_days"])
