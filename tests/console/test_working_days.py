"""Deadlines in working days, Shanghai time, with the State Council's holidays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from xbus.console.errors import ConsoleError
from xbus.console.working_days import SHANGHAI, Calendar, load_calendar


def shanghai(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=SHANGHAI)


def test_two_working_days_from_a_monday_end_with_wednesday() -> None:
    due = Calendar().deadline(shanghai(2026, 11, 30, 10, 0), 2)
    assert due == shanghai(2026, 12, 3, 0, 0)


def test_a_weekend_does_not_count() -> None:
    # Friday 4 December 2026: Monday and Tuesday are the two working days.
    assert Calendar().deadline(shanghai(2026, 12, 4, 17, 30), 2) == shanghai(2026, 12, 9)
    # Five working days from a Saturday: Monday to Friday of the next week.
    assert Calendar().deadline(shanghai(2026, 12, 5, 9), 5) == shanghai(2026, 12, 12)


def test_the_day_counts_in_shanghai_not_in_utc() -> None:
    # 23:30 UTC on Sunday is 07:30 on Monday in Shanghai.
    late = dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC)
    assert Calendar().deadline(late, 2) == shanghai(2026, 12, 3)


def test_holidays_rest_and_adjusted_weekend_days_work(tmp_path: Path) -> None:
    file = tmp_path / "calendar.yaml"
    file.write_text("holidays: [2027-01-01]\nworking_days: [2027-01-02]\n")
    calendar = load_calendar(file)
    # Thursday 31 December 2026: Friday is a holiday, Saturday a working day, then Monday.
    assert calendar.deadline(shanghai(2026, 12, 31, 12), 2) == shanghai(2027, 1, 5)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("holidays: [tomorrow]\n", "holidays is a list of dates"),
        ("holidays: [2027-01-01]\nworking_days: [2027-01-01]\n", "both a holiday"),
        ("weekends: []\n", "only the lists"),
        ("holidays: [2027-01-01\n", "cannot read"),
    ],
)
def test_a_bad_calendar_says_what_and_where(tmp_path: Path, text: str, problem: str) -> None:
    file = tmp_path / "calendar.yaml"
    file.write_text(text)
    with pytest.raises(ConsoleError, match=problem) as raised:
        load_calendar(file)
    assert str(file) in str(raised.value)
