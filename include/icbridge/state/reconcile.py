"""Balance All reports in the state DB (the tables: icbridge.state.balance_tables): runs are
written first (``running``), items appended in batches while the run goes, and the run finished
with its counters, so a run that dies half-way is visible as such; a finished run is compared
with the biller's previous completed weekly run (icbridge.state.balance_changes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, asc, case, desc, func, select, update

from icbridge.reconcile.compare import MISMATCHES, OUTCOMES, Item, Outcome
from icbridge.reconcile.engine import Summary
from icbridge.state.balance_changes import Baseline, load_baseline, record_comparison
from icbridge.state.balance_tables import (
    COUNT_COLUMNS,
    FAILED,
    FAILED_THRESHOLD,
    INTERRUPTED,
    RUNNING,
    SUCCEEDED,
    Money,
    balance_items,
    balance_runs,
    completed_weekly,
)
from icbridge.state.db import default_state_url, make_engine, now
from icbridge.state.engine import inserted_id
from icbridge.state.schema import ensure_schema

__all__ = ["FAILED", "FAILED_THRESHOLD", "INTERRUPTED", "ITEM_COLUMNS", "RUNNING", "SORTABLE", "SUCCEEDED",
           "Money", "ReconcileStore", "RunRow", "balance_items", "balance_runs"]


# Columns the pages and downloads may sort by (whitelist: never a name from a request).
ITEM_COLUMNS = (
    "account_number",
    "invoice_number",
    "outcome",
    "change",  # against the previous completed weekly run: new | still_open (icbridge.state.balance_changes)
    "open_since",
    "previous_outcome",
    "ic_balance_due",
    "cis_balance",
    "difference",
    "ic_total_amount_due",
    "cis_future_balance",
    "total_difference",
    "ic_block_cc",
    "ic_block_eft",
    "cis_cash_only",
    "corrected",
    "message",
    "before",
    "after",
)
SORTABLE = ITEM_COLUMNS[:-2]


@dataclass(frozen=True)
class RunRow:
    """A run as the pages show it."""

    id: int
    biller_id: str
    week: str
    dag_run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    dry_run: bool
    corrections_allowed: bool
    error_threshold_pct: float
    accounts_checked: int
    counts: dict[str, int]
    sum_abs_difference: Decimal
    net_difference: Decimal
    corrections_made: int
    corrections_failed: int
    message: str | None

    @property
    def mismatches(self) -> int:
        return sum(self.counts[outcome] for outcome in MISMATCHES)

    @property
    def mismatch_rate_pct(self) -> float:
        return 100.0 * self.mismatches / self.accounts_checked if self.accounts_checked else 0.0


def _run_row(row: Any) -> RunRow:
    m = row._mapping
    return RunRow(
        id=m["id"],
        biller_id=m["biller_id"],
        week=m["week"],
        dag_run_id=m["dag_run_id"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        status=m["status"],
        dry_run=bool(m["dry_run"]),
        corrections_allowed=bool(m["corrections_allowed"]),
        error_threshold_pct=float(m["error_threshold_pct"]),
        accounts_checked=m["accounts_checked"],
        counts={str(outcome): m[column] for outcome, column in COUNT_COLUMNS.items()},
        sum_abs_difference=m["sum_abs_difference"],
        net_difference=m["net_difference"],
        corrections_made=m["corrections_made"],
        corrections_failed=m["corrections_failed"],
        message=m["message"],
    )


def item_values(item: Item) -> dict[str, Any]:
    return {
        "account_number": item.account_number,
        "invoice_number": item.invoice_number,
        "outcome": str(item.outcome),
        "open_invoices": item.open_invoices,
        "ic_balance_due": item.ic_balance_due,
        "ic_total_amount_due": item.ic_total_amount_due,
        "ic_block_cc": item.ic_block_cc,
        "ic_block_eft": item.ic_block_eft,
        "cis_balance": item.cis_balance,
        "cis_future_balance": item.cis_future_balance,
        "cis_cash_only": item.cis_cash_only,
        "difference": item.difference,
        "total_difference": item.total_difference,
        "message": item.message,
        "corrected": item.corrected,
        "before": item.before,
        "after": item.after,
    }


class ReconcileStore:
    """Balance All runs and items. Every method is one short transaction."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        self.url = url or default_state_url()
        self.engine = engine or make_engine(self.url)
        self._baselines: dict[int, Baseline] = {}  # runs being stored: each one's baseline (balance_changes)
        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # writing --------------------------------------------------------------------------------
    def start_run(
        self,
        biller_id: str,
        week: str,
        *,
        dag_run_id: str | None,
        dry_run: bool,
        corrections_allowed: bool,
        error_threshold_pct: float,
    ) -> int:
        """A new run row (`running`). An earlier attempt of the same Airflow run still marked
        `running` died without finishing: it becomes `interrupted`."""
        with self.engine.begin() as conn:
            if dag_run_id:
                conn.execute(
                    update(balance_runs)
                    .where(
                        balance_runs.c.biller_id == biller_id,
                        balance_runs.c.dag_run_id == dag_run_id,
                        balance_runs.c.status == RUNNING,
                    )
                    .values(status=INTERRUPTED, finished_at=now(), message="the task attempt ended without finishing")
                )
            result = conn.execute(
                balance_runs.insert().values(
                    biller_id=biller_id,
                    week=week,
                    dag_run_id=dag_run_id,
                    started_at=now(),
                    status=RUNNING,
                    dry_run=dry_run,
                    corrections_allowed=corrections_allowed,
                    error_threshold_pct=error_threshold_pct,
                    accounts_checked=0,
                    **dict.fromkeys(COUNT_COLUMNS.values(), 0),
                    sum_abs_difference=Decimal(0),
                    net_difference=Decimal(0),
                    corrections_made=0,
                    corrections_failed=0,
                )
            )
            return inserted_id(result)

    def _baseline(self, conn: Connection, run_id: int) -> Baseline:
        if run_id not in self._baselines:
            self._baselines[run_id] = load_baseline(conn, run_id)
        return self._baselines[run_id]

    def add_items(self, run_id: int, items: Iterable[Item]) -> int:
        """Store a batch of the run's items, each marked against the run's baseline (new or
        still open, since when: icbridge.state.balance_changes)."""
        items = list(items)
        if items:
            with self.engine.begin() as conn:
                baseline = self._baseline(conn, run_id)
                conn.execute(balance_items.insert(), [{"run_id": run_id, **item_values(item),
                                                       **baseline.mark(item.account_number)} for item in items])
        return len(items)

    def finish_run(self, run_id: int, summary: Summary, status: str, message: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(balance_runs)
                .where(balance_runs.c.id == run_id)
                .values(
                    finished_at=now(),
                    status=status,
                    message=message,
                    accounts_checked=summary.accounts_checked,
                    **{COUNT_COLUMNS[o]: summary.counts[o] for o in OUTCOMES},
                    sum_abs_difference=summary.sum_abs_difference,
                    net_difference=summary.net_difference,
                    corrections_made=summary.corrections_made,
                    corrections_failed=summary.corrections_failed,
                )
            )
            if status in (SUCCEEDED, FAILED_THRESHOLD):  # every account was checked: what was resolved, the counts
                record_comparison(conn, run_id, self._baseline(conn, run_id))
        self._baselines.pop(run_id, None)

    # reading --------------------------------------------------------------------------------
    def billers(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(balance_runs.c.biller_id).distinct().order_by(balance_runs.c.biller_id))
                        .scalars())

    def runs(self, biller_id: str | None = None, limit: int = 200) -> list[RunRow]:
        """Newest first."""
        query = select(balance_runs).order_by(balance_runs.c.started_at.desc(), balance_runs.c.id.desc()).limit(limit)
        if biller_id:
            query = query.where(balance_runs.c.biller_id == biller_id)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)]

    def run(self, run_id: int) -> RunRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(balance_runs).where(balance_runs.c.id == run_id)).first()
        return None if row is None else _run_row(row)

    def history(self, biller_id: str, before_or_at: datetime | None = None, weeks: int = 26) -> list[RunRow]:
        """The biller's finished runs (not interrupted), oldest first, for the mismatch-rate chart."""
        query = (
            select(balance_runs)
            .where(
                balance_runs.c.biller_id == biller_id,
                balance_runs.c.status.in_((SUCCEEDED, FAILED_THRESHOLD)),
            )
            .order_by(balance_runs.c.started_at.desc(), balance_runs.c.id.desc())
            .limit(weeks)
        )
        if before_or_at is not None:
            query = query.where(balance_runs.c.started_at <= before_or_at)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)][::-1]

    def weekly(self, biller_id: str, weeks: int = 12) -> list[RunRow]:
        """The biller's completed weekly runs (balance_tables.completed_weekly) of its last
        ``weeks`` weeks, one a week (the one that finished last), oldest first: the index's
        week against week and its trend."""
        query = (select(balance_runs).where(balance_runs.c.biller_id == biller_id, *completed_weekly())
                 .order_by(balance_runs.c.week.desc(), balance_runs.c.finished_at.desc(), balance_runs.c.id.desc()))
        found: dict[str, RunRow] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                run = _run_row(row)
                if run.week not in found:
                    if len(found) == weeks:
                        break
                    found[run.week] = run
        return list(found.values())[::-1]

    def _items_query(self, run_id: int, outcome: str | None, sort: str, descending: bool,
                     change: str | None = None, columns: bool = True) -> Any:
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}; one of {', '.join(SORTABLE)}")
        query = select(balance_items) if columns else select(func.count()).select_from(balance_items)
        query = query.where(balance_items.c.run_id == run_id)
        if outcome:
            if outcome not in {str(o) for o in OUTCOMES}:
                raise ValueError(f"unknown outcome {outcome!r}")
            query = query.where(balance_items.c.outcome == outcome)
        if change:
            if change not in ("new", "still_open"):
                raise ValueError(f"unknown change {change!r}: new or still_open (resolved accounts are listed apart)")
            query = query.where(balance_items.c.change == change)
        if not columns:
            return query
        column = balance_items.c[sort]
        order = (desc(column) if descending else asc(column)).nulls_last()  # same on SQLite and PostgreSQL
        return query.order_by(order, balance_items.c.id)

    def count_items(self, run_id: int, outcome: str | None = None, change: str | None = None) -> int:
        query = self._items_query(run_id, outcome, "account_number", False, change, columns=False)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def items(
        self,
        run_id: int,
        *,
        outcome: str | None = None,
        change: str | None = None,
        sort: str = "account_number",
        descending: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """One page of a run's items (server-side sort, filter, paging), each with its change
        marks (``change``, ``open_since``, ``previous_outcome``; None when not compared)."""
        query = self._items_query(run_id, outcome, sort, descending, change).offset(max(offset, 0)).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def iter_items(
        self, run_id: int, *, outcome: str | None = None, change: str | None = None, sort: str = "account_number",
        descending: bool = False, chunk: int = 2000,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a run with its change marks, streamed in chunks (downloads of 100k rows)."""
        query = self._items_query(run_id, outcome, sort, descending, change)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
            for row in result:
                yield dict(row._mapping)

    def differences(self, run_id: int) -> Iterator[Decimal]:
        """Every mismatch's difference of its own kind (histogram): the total due's for a
        total-due mismatch, the balance's otherwise (Item.own_difference), streamed."""
        own = case((balance_items.c.outcome == str(Outcome.TOTAL_MISMATCH), balance_items.c.total_difference),
                   else_=balance_items.c.difference)
        query = select(own).where(balance_items.c.run_id == run_id,
                                  balance_items.c.outcome.in_([str(o) for o in MISMATCHES]), own.is_not(None))
        with self.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=5000).execute(query).scalars()
