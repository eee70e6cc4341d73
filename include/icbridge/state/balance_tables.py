"""Balance All reports in the state DB: one row per run, one row per account that is not a match.

Plain tables on the shared ``metadata`` so analysts query history with SQL (examples in
docs/balance-all.md). Money is NUMERIC(14,2) on PostgreSQL; on SQLite (no decimal type) it is
stored as REAL, which holds every cent amount below 10^13 exactly enough to round back, and
read back as Decimal either way.

A run row is written first (``running``), items are appended in batches while the run goes,
and the run is finished with its counters, so a run that dies half-way is visible as such.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

from icbridge.reconcile.compare import CENT, Outcome
from icbridge.state.db import metadata


class Money(TypeDecorator):
    """Decimal to the cent: NUMERIC(14,2) where the database has it, REAL on SQLite."""

    impl = Numeric(14, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(Numeric(14, 2))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return float(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(CENT)


# statuses of a run
RUNNING, SUCCEEDED, FAILED_THRESHOLD, FAILED, INTERRUPTED = (
    "running",
    "succeeded",
    "failed_threshold",
    "failed",
    "interrupted",
)

COUNT_COLUMNS = {
    Outcome.MATCH: "matches",
    Outcome.BALANCE_MISMATCH: "balance_mismatches",
    Outcome.TOTAL_MISMATCH: "total_mismatches",  # schema 5
    Outcome.FLAGS_MISMATCH: "flags_mismatches",
    Outcome.MISSING_IN_CIS: "missing_in_cis",
    Outcome.CIS_ERROR: "cis_errors",
}

balance_runs = Table(
    "icb_balance_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("week", String(8), nullable=False),  # ISO week in the biller's time zone, e.g. 2026-W45
    Column("dag_run_id", String(255)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    # running | succeeded | failed_threshold | failed | interrupted
    Column("status", String(24), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("corrections_allowed", Boolean, nullable=False),
    Column("error_threshold_pct", Float, nullable=False),
    Column("accounts_checked", Integer, nullable=False, default=0),
    *(Column(name, Integer, nullable=False, default=0) for name in COUNT_COLUMNS.values()),
    Column("sum_abs_difference", Money, nullable=False, default=0),
    Column("net_difference", Money, nullable=False, default=0),
    Column("corrections_made", Integer, nullable=False, default=0),
    Column("corrections_failed", Integer, nullable=False, default=0),
    Column("message", Text),
    Index("ix_icb_balance_runs_biller", "biller_id", "started_at"),
)

balance_items = Table(
    "icb_balance_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("icb_balance_runs.id", ondelete="CASCADE"), nullable=False),
    Column("account_number", String(64), nullable=False),  # whole: the report is for analysts, not logs
    Column("invoice_number", String(64), nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("open_invoices", Integer, nullable=False, default=1),
    Column("ic_balance_due", Money),
    Column("ic_total_amount_due", Money),
    Column("ic_block_cc", Boolean),
    Column("ic_block_eft", Boolean),
    Column("cis_balance", Money),
    Column("cis_future_balance", Money),
    Column("cis_cash_only", Boolean),
    Column("difference", Money),  # IC BalanceDue - CIS Balance
    Column("total_difference", Money),  # IC TotalAmountDue - CIS FutureBalance (inHance version 2)
    Column("message", Text),
    Column("corrected", Boolean, nullable=False, default=False),
    Column("before", JSON),  # IC values a correction replaced (or would have, in a dry run)
    Column("after", JSON),  # values written to IC
    # against the run's baseline, set when stored (schema 5; icbridge.state.balance_changes): new | still_open
    Column("change", String(16)),
    Column("open_since", DateTime(timezone=True)),
    Column("previous_outcome", String(24)),
    Index("ix_icb_balance_items_run_outcome", "run_id", "outcome"),
    Index("ix_icb_balance_items_run_account", "run_id", "account_number"),
)


def completed_weekly() -> tuple[Any, ...]:
    """The clauses of a completed weekly run, the one analysts compare weeks by (the change
    marks, the index's week against week, the health row): succeeded, not a dry run, started by
    the schedule (Airflow's ``scheduled__`` run ids), not a manual run."""
    return (balance_runs.c.status == SUCCEEDED, balance_runs.c.dry_run.is_(False),
            balance_runs.c.dag_run_id.like("scheduled\\_\\_%", escape="\\"))
