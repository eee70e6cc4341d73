"""When the AUS export is due (flows/due.py): the latest due day whose deadline passed, and the
window its file counts in, in the biller's time zone; weekends and holidays are not due days."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from icbridge.config.biller import ExpectedFiles
from icbridge.flows.due import due_window

NY = ZoneInfo("America/New_York")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.mark.parametrize(
    ("now", "day", "since", "deadline"),
    [
        ("2026-12-08T07:59", "2026-12-07", "2026-12-04T08:00", "2026-12-07T08:00"),  # Tuesday, within its grace
        ("2026-12-08T08:00", "2026-12-08", "2026-12-07T08:00", "2026-12-08T08:00"),  # Tuesday's deadline reached
        ("2026-12-06T12:00", "2026-12-04", "2026-12-03T08:00", "2026-12-04T08:00"),  # Sunday: Friday's file
        ("2026-12-07T09:00", "2026-12-07", "2026-12-04T08:00", "2026-12-07T08:00"),  # Monday: since Friday's
    ],
)
def test_the_due_window_of_business_days_by_six_with_two_hours_grace(now, day, since, deadline):
    window = due_window(ExpectedFiles(), NY, _at(now))
    assert window is not None
    assert (window.day, window.since, window.deadline) == (date.fromisoformat(day), _at(since), _at(deadline))


def test_a_holiday_is_not_a_due_day_and_daily_files_are_due_every_day():
    christmas = ExpectedFiles(holidays=[date(2026, 12, 25)])
    window = due_window(christmas, NY, _at("2026-12-25T12:00"))
    assert window is not None and window.day == date(2026, 12, 24)
    daily = ExpectedFiles(days="daily", by="05:30", grace_minutes=0)
    window = due_window(daily, NY, _at("2026-12-06T05:31"))
    assert window is not None and window.day == date(2026, 12, 6) and window.since == _at("2026-12-05T05:30")


def test_the_deadline_is_the_billers_wall_clock_across_a_dst_change():
    window = due_window(ExpectedFiles(), NY, _at("2026-11-02T09:00"))  # the Monday after DST ended
    assert window is not None and window.deadline.utcoffset().total_seconds() == -5 * 3600
    assert window.since.utcoffset().total_seconds() == -4 * 3600  # Friday 08:00 was still EDT
