"""Money, weeks, times and run kinds in the form a US analyst reads them: one rule for every
page (issue 24). XLSX keeps numbers numeric with the same rule as a format (reconcile.export.MONEY_FORMAT);
CSV keeps them plain.

* money: ``$1,234.56``, a negative with a minus: ``-$25.00`` (None: blank, never $0.00);
* a week: ``week ending 12/06/2026`` (the Sunday that ends the ISO week a run is filed under);
* a time: the biller's zone, named: ``2026-12-07 06:00 EST``; a day alone: ``12/07/2026``;
* a run: ``weekly`` (scheduled), ``manual`` (triggered) or ``dry run`` (nothing corrected); one
  that checked 0 accounts, or under half the weekly run before, is a warning (``coverage_warning``);
* a change against last week: ``+3`` / ``-2`` / ``±0``, money ``+$10.00`` / ``-$5.00``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["COVERAGE_FLOOR", "coverage_warning", "date_local", "delta", "money", "run_kind", "week_ending",
           "when_local"]


def money(value: Decimal | int | float | None) -> str:
    """``$1,234.56`` / ``-$25.00``; None (a value not received) is blank, never $0.00."""
    if value is None:
        return ""
    amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    text = f"${abs(amount):,.2f}"
    return f"-{text}" if amount < 0 else text


def week_ending(iso_week: str) -> str:
    """``2026-W49`` -> ``week ending 12/06/2026`` (the Sunday of that ISO week)."""
    try:
        year, week = iso_week.split("-W")
        sunday = date.fromisocalendar(int(year), int(week), 7)
    except ValueError:
        return iso_week
    return f"week ending {sunday:%m/%d/%Y}"


def when_local(moment: datetime | None, tz: ZoneInfo | None) -> str:
    """A stored time in the biller's zone, the zone named (UTC for a biller file that is gone)."""
    if moment is None:
        return "—"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite keeps UTC naive
    return aware.astimezone(tz or UTC).strftime("%Y-%m-%d %H:%M %Z")


def date_local(moment: datetime | None, tz: ZoneInfo | None) -> str:
    """The day of a stored time in the biller's zone, ``MM/DD/YYYY`` (blank when None)."""
    if moment is None:
        return ""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(tz or UTC):%m/%d/%Y}"


def run_kind(run: Any) -> str:
    """``dry run``, ``weekly`` (the schedule's) or ``manual``, from the run's own record."""
    if getattr(run, "dry_run", False):
        return "dry run"
    return "weekly" if str(getattr(run, "dag_run_id", "") or "").startswith("scheduled__") else "manual"


COVERAGE_FLOOR = 0.5
"""A finished run that checked fewer than this share of the accounts the weekly run before it
checked is a warning (IC may have listed only part of its open invoices)."""


def coverage_warning(run: Any, previous: Any | None = None) -> str | None:
    """Why a finished run proves less than it seems, or None: it checked 0 accounts, or far
    fewer (under :data:`COVERAGE_FLOOR`) than ``previous``, the biller's weekly run before it."""
    if getattr(run, "status", "") not in ("succeeded", "failed_threshold"):
        return None
    checked = getattr(run, "accounts_checked", 0) or 0
    if not checked:
        return "0 accounts checked: IC listed no open invoice, or the list failed; it proves nothing"
    before = getattr(previous, "accounts_checked", 0) or 0 if previous is not None else 0
    if before and checked < COVERAGE_FLOOR * before:
        return (f"{checked:,} accounts checked, {before:,} the weekly run before: IC may have listed only part "
                "of its open invoices")
    return None


def delta(now: Decimal | int | None, before: Decimal | int | None, *, as_money: bool = False) -> str:
    """This week against last week, signed: ``+3`` / ``-2`` / ``±0`` (``+$10.00`` with
    ``as_money``); blank when either week has no value."""
    if now is None or before is None:
        return ""
    change = Decimal(now) - Decimal(before)
    if not change:
        return "±0"
    text = money(abs(change)) if as_money else f"{abs(change):,}"
    return f"+{text}" if change > 0 else f"-{text}"
