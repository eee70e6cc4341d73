"""What changed since the biller's previous completed weekly Balance All run (issue 24).

Every account a run reports (every outcome but a match) is marked on its item row when it is
stored, against the run's **baseline**: the biller's completed weekly run of the latest
*earlier* week (:func:`icbridge.state.balance_tables.completed_weekly`: succeeded, not dry,
scheduled; one that checked 0 accounts is never a baseline; of two runs of one week, the one
that finished last), whatever this run's own kind. The week, not the start time, orders runs:
a week cleared and run again late is still compared with the week before it, and a rerun of
this week is never "last week".

* ``new``: the baseline did not report the account;
* ``still_open``: it did (under any outcome: ``previous_outcome`` says which); ``open_since``
  is the start of the first run of the unbroken chain of baselines that reported it;
* resolved: the baseline reported it and this run, having checked every account (``succeeded``
  or ``failed_threshold``), does not (it matched, or IC no longer lists an open invoice for it):
  one ``icb_balance_resolved`` row with the baseline's outcome and difference.

Tables (plain SQL for analysts, docs/balance-all.md): the marks are columns of
``icb_balance_items`` (``change``, ``open_since``, ``previous_outcome``: read without a join);
``icb_balance_resolved``; ``icb_balance_comparisons`` (one row per compared run: its baseline,
or NULL, and the three counts). Finishing again (a retried finish) replaces a run's resolved
and comparison rows. Every read is one indexed ``run_id`` query (no join whose plan depends on
the planner's statistics); the baseline's accounts are held in memory, ~0.5 KB each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    case,
    delete,
    func,
    select,
)

from icbridge.reconcile.compare import Outcome
from icbridge.state.balance_tables import Money, balance_items, balance_runs, completed_weekly
from icbridge.state.db import metadata, now

__all__ = ["CHANGE_LABELS", "Baseline", "Comparison", "balance_comparisons", "balance_resolved", "comparison",
           "load_baseline", "record_comparison", "resolved"]

CHANGE_LABELS = {"new": "new", "still_open": "still open", "resolved": "resolved"}
"""What people read for each mark (pages); the code names stay in URLs, CSV, XLSX and SQL."""

balance_resolved = Table(
    "icb_balance_resolved",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("icb_balance_runs.id", ondelete="CASCADE"), nullable=False),
    Column("account_number", String(64), nullable=False),
    Column("invoice_number", String(64), nullable=False),
    Column("previous_outcome", String(24), nullable=False),  # the baseline's
    Column("difference", Money),  # the baseline's own difference
    Column("open_since", DateTime(timezone=True), nullable=False),
    Index("ix_icb_balance_resolved_run", "run_id"),
)

balance_comparisons = Table(
    "icb_balance_comparisons",
    metadata,
    Column("run_id", Integer, ForeignKey("icb_balance_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("previous_run_id", Integer),  # the baseline; NULL: no completed weekly run of an earlier week
    Column("new", Integer, nullable=False),
    Column("still_open", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
    Column("compared_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Comparison:
    """A run against its baseline (``previous_run_id`` None: none yet)."""

    run_id: int
    previous_run_id: int | None
    new: int
    still_open: int
    resolved: int


@dataclass(frozen=True)
class _Reported:
    invoice_number: str
    outcome: str
    difference: Decimal | None
    open_since: datetime


@dataclass
class Baseline:
    """A run's baseline: its id (None: none), and what it reported, by account."""

    started_at: datetime  # of the run being marked: a new account is open since then
    run_id: int | None = None
    reported: dict[str, _Reported] = field(default_factory=dict)

    def mark(self, account_number: str) -> dict[str, Any]:
        """The item columns that mark ``account_number`` in the run (module docstring)."""
        last = self.reported.get(account_number)
        if last is None:
            return {"change": "new", "open_since": self.started_at, "previous_outcome": None}
        return {"change": "still_open", "open_since": last.open_since, "previous_outcome": last.outcome}


def _own_difference() -> Any:
    return case((balance_items.c.outcome == str(Outcome.TOTAL_MISMATCH), balance_items.c.total_difference),
                else_=balance_items.c.difference)


def load_baseline(conn: Connection, run_id: int) -> Baseline:
    """Run ``run_id``'s baseline (module docstring) and what it reported."""
    run = conn.execute(select(balance_runs).where(balance_runs.c.id == run_id)).one()
    previous = conn.execute(
        select(balance_runs.c.id, balance_runs.c.started_at)
        .where(balance_runs.c.biller_id == run.biller_id, balance_runs.c.id != run.id,
               balance_runs.c.week < run.week, balance_runs.c.accounts_checked > 0, *completed_weekly())
        .order_by(balance_runs.c.week.desc(), balance_runs.c.finished_at.desc(), balance_runs.c.id.desc()).limit(1)
    ).first()
    found = Baseline(run.started_at)
    if previous is None:
        return found
    found.run_id = previous.id
    rows = conn.execute(
        select(balance_items.c.account_number, balance_items.c.invoice_number, balance_items.c.outcome,
               _own_difference().label("difference"), balance_items.c.open_since)
        .where(balance_items.c.run_id == previous.id)
    )
    for r in rows:  # stored before the marks (schema 5): open since the baseline's start
        found.reported[r.account_number] = _Reported(r.invoice_number, r.outcome, r.difference,
                                                     r.open_since or previous.started_at)
    return found


def record_comparison(conn: Connection, run_id: int, baseline: Baseline, batch: int = 5000) -> Comparison:
    """Record what the baseline reported that run ``run_id`` does not (resolved) and the run's
    counts; replaces what an earlier call recorded for the run."""
    conn.execute(delete(balance_resolved).where(balance_resolved.c.run_id == run_id))
    conn.execute(delete(balance_comparisons).where(balance_comparisons.c.run_id == run_id))
    seen = set(conn.execute(select(balance_items.c.account_number).where(balance_items.c.run_id == run_id))
               .scalars())
    by_change = select(balance_items.c.change, func.count()).where(balance_items.c.run_id == run_id)
    counts: dict[str | None, int] = dict(conn.execute(by_change.group_by(balance_items.c.change)).all())
    gone = [{"run_id": run_id, "account_number": account, "invoice_number": last.invoice_number,
             "previous_outcome": last.outcome, "difference": last.difference, "open_since": last.open_since}
            for account, last in baseline.reported.items() if account not in seen]
    for start in range(0, len(gone), batch):
        conn.execute(balance_resolved.insert(), gone[start:start + batch])
    found = Comparison(run_id, baseline.run_id, counts.get("new", 0), counts.get("still_open", 0), len(gone))
    conn.execute(balance_comparisons.insert().values(
        run_id=run_id, previous_run_id=found.previous_run_id, new=found.new, still_open=found.still_open,
        resolved=found.resolved, compared_at=now()))
    return found


def comparison(engine: Engine, run_id: int) -> Comparison | None:
    """The run's comparison, None when it was not compared (running, failed, interrupted, or
    stored before schema 5)."""
    with engine.connect() as conn:
        row = conn.execute(select(balance_comparisons).where(balance_comparisons.c.run_id == run_id)).first()
    return None if row is None else Comparison(row.run_id, row.previous_run_id, row.new, row.still_open,
                                               row.resolved)


def resolved(engine: Engine, run_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The run's resolved accounts (account, invoice, previous outcome, difference, open since),
    largest difference first."""
    query = (select(balance_resolved.c.account_number, balance_resolved.c.invoice_number,
                    balance_resolved.c.previous_outcome, balance_resolved.c.difference, balance_resolved.c.open_since)
             .where(balance_resolved.c.run_id == run_id)
             .order_by(func.abs(balance_resolved.c.difference).desc().nulls_last(), balance_resolved.c.account_number))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
