"""Integration health: per biller and flow, how far it got and what waits for a person.

Read from the state DB only (the watermarks, the payment ledger, the upload ledger, the
delivery log) plus the biller files (which flows a biller has, its lag bounds), for the
"Integration health" page (icbridge.web.health_pages). A value the state DB does not have is shown
as unknown (None), never as zero. No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from icbridge.config.biller import BillerConfig
from icbridge.flows.due import due_window
from icbridge.state.balance_tables import balance_runs, completed_weekly
from icbridge.state.db import invoice_uploads, source_files
from icbridge.state.deliveries import deliveries
from icbridge.state.payments import NEEDS_OPS, payment_posts
from icbridge.state.schema import ensure_schema
from icbridge.state.watermarks import utc, watermarks

__all__ = ["BALANCE_ALL_LAG_BOUND", "EXPORT_LAG_BOUND", "FLOWS", "NOT_OK", "HealthRow", "health_rows"]

FLOWS = ("invoices", "balance_all", "balances", "payments", "customer_changes", "payment_export")
EXPORT_LAG_BOUND = timedelta(hours=26)
"""A daily export's watermark is the closure (23:59) of the last day exported: it is normally
under 24 h old; more than this and a day is missing."""
BALANCE_ALL_LAG_BOUND = timedelta(days=8)
"""The weekly Balance All: its last completed weekly run (scheduled, not a dry run) is normally
under 7 days old; more than this (a day's grace) and a week was missed."""
REJECTED_WINDOW = timedelta(days=7)
_RANK = {"late": 0, "behind": 0, "failed": 1, "attention": 2, "never run": 3, "ok": 4}
NOT_OK = ("late", "behind", "failed", "attention")
"""The statuses that need someone: the health page counts them, the CLI exits 1, the alerts fire."""


@dataclass(frozen=True)
class HealthRow:
    biller_id: str
    flow: str
    status: str  # late | behind | failed | attention | never run | ok
    last_success: datetime | None
    covered_through: datetime | None  # None: no watermark (never covered, or a flow without one)
    lag: timedelta | None
    lag_bound: timedelta | None
    in_doubt: int | None  # items waiting for a person; None: the flow has none to wait on
    rejected_7d: int | None  # invoice files rejected in the last 7 days (invoices only)
    last_message: str | None
    due: datetime | None = None  # invoices: the deadline of the file that should be there (late: missing)
    last_received: datetime | None = None  # invoices: when the last file was first seen

    def sort_key(self) -> tuple:
        """Worst first: status, then the largest lag, then the most in doubt."""
        lag = self.lag.total_seconds() if self.lag is not None else -1.0
        return (_RANK.get(self.status, 9), -lag, -(self.in_doubt or 0), self.biller_id, self.flow)


def _flows(biller: BillerConfig) -> list[str]:
    """The biller's flows: each has a health row."""
    return list(biller.flows())


def _bound(biller: BillerConfig | None, flow: str) -> timedelta | None:
    if biller is None:
        return None
    if flow == "payment_export":
        return EXPORT_LAG_BOUND
    if flow == "balance_all":
        return BALANCE_ALL_LAG_BOUND
    if flow in ("balances", "payments", "customer_changes"):
        return timedelta(minutes=biller.sync_settings().max_lag_minutes)
    return None


def health_rows(engine: Engine, billers: Iterable[BillerConfig], now: datetime | None = None) -> list[HealthRow]:
    """One row per (biller, flow) a biller file turns on, plus any flow the state DB knows of
    whose biller file is gone; worst first."""
    now = now or datetime.now(UTC)
    ensure_schema(engine)
    configs = {b.biller_id: b for b in billers}
    cutoff = (now - REJECTED_WINDOW).astimezone(UTC)
    if engine.dialect.name == "sqlite":  # stored without an offset, in UTC
        cutoff = cutoff.replace(tzinfo=None)
    with engine.connect() as conn:
        marks = {(r.biller_id, r.flow): r for r in conn.execute(select(watermarks))}
        payments: dict[str, int] = dict(conn.execute(
            select(payment_posts.c.biller_id, func.count())
            .where(payment_posts.c.status.in_([*NEEDS_OPS, "sending"]))
            .group_by(payment_posts.c.biller_id)).all())
        uploads: dict[str, int] = dict(conn.execute(
            select(source_files.c.biller_id, func.count())
            .select_from(invoice_uploads.join(source_files, source_files.c.id == invoice_uploads.c.source_file_id))
            .where(invoice_uploads.c.status == "sending", invoice_uploads.c.generation == source_files.c.generation)
            .group_by(source_files.c.biller_id)).all())
        sends: dict[str, int] = dict(conn.execute(
            select(deliveries.c.biller_id, func.count())
            .where(deliveries.c.status == "sending")
            .group_by(deliveries.c.biller_id)).all())
        rejected: dict[str, int] = dict(conn.execute(
            select(source_files.c.biller_id, func.count())
            .where(source_files.c.status == "rejected",
                   source_files.c.updated_at >= cutoff)
            .group_by(source_files.c.biller_id)).all())
        received_at: dict[str, datetime] = dict(conn.execute(
            select(source_files.c.biller_id, func.max(source_files.c.first_seen_at))
            .group_by(source_files.c.biller_id)).all())
        weekly_at: dict[str, datetime] = dict(conn.execute(
            select(balance_runs.c.biller_id, func.max(balance_runs.c.finished_at))
            .where(*completed_weekly())
            .group_by(balance_runs.c.biller_id)).all())
        uploaded_at = dict(conn.execute(
            select(source_files.c.biller_id, func.max(source_files.c.updated_at))
            .where(source_files.c.status == "uploaded")
            .group_by(source_files.c.biller_id)).all())

    wanted = {(b.biller_id, f) for b in configs.values() for f in _flows(b)} | set(marks)
    rows = []
    for biller_id, flow in wanted:
        config = configs.get(biller_id)
        mark = marks.get((biller_id, flow))
        covered = utc(mark.covered_through) if mark is not None else None
        last_success = utc(mark.last_success_at) if mark is not None else None
        message = mark.last_message if mark is not None else None
        in_doubt: int | None = None
        rejected_7d: int | None = None
        if flow == "payments":
            in_doubt = payments.get(biller_id, 0)
        elif flow == "payment_export":
            in_doubt = sends.get(biller_id, 0)
        elif flow == "invoices":
            in_doubt = uploads.get(biller_id, 0)
            rejected_7d = rejected.get(biller_id, 0)
            last_success = utc(uploaded_at.get(biller_id))
        due: datetime | None = None
        received: datetime | None = None
        late = False
        if flow == "invoices":
            received = utc(received_at.get(biller_id))
            if config is not None and config.invoices is not None:
                window = due_window(config.invoices.expected, config.tz, now)
                due = window.deadline.astimezone(UTC) if window is not None else None
                late = window is not None and (received is None or received < window.since)
        elif flow == "balance_all":
            covered = utc(weekly_at.get(biller_id))  # its "watermark": the last completed weekly run
            last_success = covered
        lag = now - covered if covered is not None else None
        bound = _bound(config, flow)
        if flow == "invoices" and due is not None and late:
            status = "late"
        elif lag is not None and bound is not None and lag > bound:
            status = "behind"
        elif mark is not None and mark.last_outcome == "failed":
            status = "failed"
        elif in_doubt or rejected_7d:
            status = "attention"
        elif last_success is None and (mark is None or mark.last_run_at is None):
            status = "never run"
        else:
            status = "ok"
        rows.append(HealthRow(biller_id, flow, status, last_success, covered, lag, bound, in_doubt, rejected_7d,
                              message, due, received))
    return sorted(rows, key=HealthRow.sort_key)
