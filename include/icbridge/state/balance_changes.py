"""What changed since the biller's previous completed weekly Balance All run (issue 24).

When a run finishes having checked every account (``succeeded`` or ``failed_threshold``), each
account it reports (every outcome but a match) is marked against the biller's latest completed
weekly run before it (:func:`icbridge.state.balance_tables.completed_weekly`: succeeded, not
dry, scheduled), whatever this run's own kind:

* ``new``: the previous weekly run did not report the account;
* ``still_open``: it did (under any outcome: ``previous_outcome`` says which); ``open_since``
  is the start of the first run of the unbroken chain of weekly runs that reported it;
* ``resolved``: the previous weekly run reported it and this run does not (it matched, or IC no
  longer lists an open invoice for it): one row with the previous run's outcome and difference.

Tables (plain SQL for analysts, docs/balance-all.md): ``icb_balance_changes`` (one row per
marked or resolved account of a run) and ``icb_balance_comparisons`` (one row per compared run:
the run it was compared with, or NULL for a biller's first, and the three counts). Comparing
again (a retried finish) replaces a run's rows. Money is the item's own difference
(:attr:`icbridge.reconcile.compare.Item.own_difference`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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

__all__ = ["CHANGES", "Comparison", "balance_changes", "balance_comparisons", "compare_with_previous",
           "comparison", "resolved"]

CHANGES = ("new", "still_open", "resolved")
CHANGE_LABELS = {"new": "new", "still_open": "still open", "resolved": "resolved"}
"""What people read for each mark (pages, XLSX); the code names stay in URLs, CSV and SQL."""

balance_changes = Table(
    "icb_balance_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("icb_balance_runs.id", ondelete="CASCADE"), nullable=False),
    Column("account_number", String(64), nullable=False),
    Column("invoice_number", String(64), nullable=False),
    Column("change", String(16), nullable=False),  # new | still_open | resolved
    Column("outcome", String(24), nullable=False),  # this run's; for resolved, the previous run's
    Column("previous_outcome", String(24)),  # still_open and resolved: the previous weekly run's
    Column("difference", Money),  # the own difference: this run's; for resolved, the previous run's
    Column("open_since", DateTime(timezone=True), nullable=False),
    Index("ix_icb_balance_changes_run_change", "run_id", "change"),
    Index("ix_icb_balance_changes_run_account", "run_id", "account_number"),
)

balance_comparisons = Table(
    "icb_balance_comparisons",
    metadata,
    Column("run_id", Integer, ForeignKey("icb_balance_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("previous_run_id", Integer),  # NULL: no completed weekly run before it
    Column("new", Integer, nullable=False),
    Column("still_open", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
    Column("compared_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Comparison:
    """A run against the previous completed weekly run (``previous_run_id`` None: none yet)."""

    run_id: int
    previous_run_id: int | None
    new: int
    still_open: int
    resolved: int


def _own_difference() -> Any:
    return case((balance_items.c.outcome == str(Outcome.TOTAL_MISMATCH), balance_items.c.total_difference),
                else_=balance_items.c.difference)


def _previous(conn: Connection, run: Any) -> Any:
    return conn.execute(
        select(balance_runs.c.id, balance_runs.c.started_at)
        .where(balance_runs.c.biller_id == run.biller_id, balance_runs.c.id != run.id,
               balance_runs.c.started_at < run.started_at, *completed_weekly())
        .order_by(balance_runs.c.started_at.desc(), balance_runs.c.id.desc()).limit(1)
    ).first()


def _reported(conn: Connection, run_id: int) -> Iterator[Any]:
    mark = balance_changes.alias("mark")
    query = (
        select(balance_items.c.account_number, balance_items.c.invoice_number, balance_items.c.outcome,
               _own_difference().label("difference"), mark.c.open_since)
        .select_from(balance_items.outerjoin(mark, (mark.c.run_id == balance_items.c.run_id)
                                             & (mark.c.account_number == balance_items.c.account_number)
                                             & (mark.c.change != "resolved")))
        .where(balance_items.c.run_id == run_id)
    )
    yield from conn.execute(query.execution_options(yield_per=5000))


def compare_with_previous(engine: Engine, run_id: int, batch: int = 5000) -> Comparison:
    """Mark run ``run_id``'s accounts new / still open and record the resolved ones (module
    docstring); replaces what an earlier call wrote for the run. One transaction."""
    with engine.begin() as conn:
        run = conn.execute(select(balance_runs).where(balance_runs.c.id == run_id)).one()
        conn.execute(delete(balance_changes).where(balance_changes.c.run_id == run_id))
        conn.execute(delete(balance_comparisons).where(balance_comparisons.c.run_id == run_id))
        previous = _previous(conn, run)
        before: dict[str, Any] = {}
        if previous is not None:
            before = {r.account_number: r for r in _reported(conn, previous.id)}
        counts = dict.fromkeys(CHANGES, 0)
        rows: list[dict[str, Any]] = []

        def add(**values: Any) -> None:
            counts[values["change"]] += 1
            rows.append({"run_id": run_id, **values})
            if len(rows) >= batch:
                conn.execute(balance_changes.insert(), rows)
                rows.clear()

        for item in list(_reported(conn, run_id)):
            last = before.pop(item.account_number, None)
            since = (last.open_since or previous.started_at) if last is not None else run.started_at
            add(account_number=item.account_number, invoice_number=item.invoice_number,
                change="new" if last is None else "still_open", outcome=item.outcome,
                previous_outcome=None if last is None else last.outcome, difference=item.difference,
                open_since=since)
        for last in before.values():  # reported last week, not this week
            add(account_number=last.account_number, invoice_number=last.invoice_number, change="resolved",
                outcome=last.outcome, previous_outcome=last.outcome, difference=last.difference,
                open_since=last.open_since or previous.started_at)
        if rows:
            conn.execute(balance_changes.insert(), rows)
        found = Comparison(run_id, None if previous is None else previous.id, counts["new"], counts["still_open"],
                           counts["resolved"])
        conn.execute(balance_comparisons.insert().values(
            run_id=run_id, previous_run_id=found.previous_run_id, new=found.new, still_open=found.still_open,
            resolved=found.resolved, compared_at=now()))
    return found


def comparison(engine: Engine, run_id: int) -> Comparison | None:
    """The run's comparison, None when it was not compared (running, failed, or stored before
    schema 5)."""
    with engine.connect() as conn:
        row = conn.execute(select(balance_comparisons).where(balance_comparisons.c.run_id == run_id)).first()
    return None if row is None else Comparison(row.run_id, row.previous_run_id, row.new, row.still_open,
                                               row.resolved)


def resolved(engine: Engine, run_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """The run's resolved accounts (account, invoice, previous outcome, difference, open since),
    largest difference first."""
    query = (select(balance_changes.c.account_number, balance_changes.c.invoice_number,
                    balance_changes.c.previous_outcome, balance_changes.c.difference, balance_changes.c.open_since)
             .where(balance_changes.c.run_id == run_id, balance_changes.c.change == "resolved")
             .order_by(func.abs(balance_changes.c.difference).desc().nulls_last(), balance_changes.c.account_number))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]

