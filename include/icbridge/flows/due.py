"""When something should have happened: the due days of an expected file (no Airflow).

An AUS biller's IC Daily Export is expected every due day by a time of day in the biller's
time zone (config.biller.ExpectedFiles). ``due_window`` answers, at ``now``: which file should
be there already — the one of the latest due day whose deadline (``by`` + grace) has passed —
and since when it counts (the deadline of the due day before: a file received after that is
the day's file). A flow whose last file came before that start is *late*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icbridge.config.biller import ExpectedFiles

__all__ = ["DueWindow", "due_window", "is_due_day"]

LOOK_BACK_DAYS = 31  # a due day is found within this many days (a month of holidays at most)


@dataclass(frozen=True)
class DueWindow:
    """The latest due day whose deadline has passed: a file received in ``[since, deadline]``
    (aware UTC) is its file; ``day`` is that due day (the biller's calendar)."""

    day: date
    since: datetime
    deadline: datetime


def is_due_day(expected: ExpectedFiles, day: date) -> bool:
    """Whether a file is due on ``day``: every day, or Monday-Friday except the holidays."""
    if expected.days == "daily":
        return True
    return day.weekday() < 5 and day not in expected.holidays


def _by(expected: ExpectedFiles, day: date, tz: ZoneInfo) -> datetime:
    hour, minute = map(int, expected.by.split(":"))
    return datetime.combine(day, time(hour, minute), tz)


def due_window(expected: ExpectedFiles, tz: ZoneInfo, now: datetime) -> DueWindow | None:
    """The window of the latest due day whose deadline passed by ``now`` (aware); None when
    no due day is found in the last LOOK_BACK_DAYS days."""
    grace = timedelta(minutes=expected.grace_minutes)
    today = now.astimezone(tz).date()
    days = [today - timedelta(days=n) for n in range(LOOK_BACK_DAYS + 1)]
    due = [d for d in days if is_due_day(expected, d)]
    for i, day in enumerate(due):
        deadline = _by(expected, day, tz) + grace
        if deadline <= now:
            before = due[i + 1] if i + 1 < len(due) else day - timedelta(days=1)
            return DueWindow(day, _by(expected, before, tz) + grace, deadline)
    return None
