"""Balance All as one call: run the engine, store the report, judge the error threshold.

Airflow-free (the operator is a thin shell). Order matters: the report is stored *before*
the threshold is judged, so a run that fails because the CIS was down still leaves its
report for analysts and ops (spec: balance-all.md, step 6).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from icbridge.errors import FlowError
from icbridge.reconcile.compare import IcAccount, Item, Outcome
from icbridge.reconcile.engine import CisLookup, IcSide, Reconciler, Settings, Summary
from icbridge.state.reconcile import FAILED, FAILED_THRESHOLD, SUCCEEDED, ReconcileStore

log = logging.getLogger(__name__)


def iso_week(moment: datetime, tz: tzinfo) -> str:
    """The ISO week of ``moment`` in the biller's time zone, e.g. ``2026-W45``."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class RunReport:
    run_id: int
    status: str
    summary: Summary

    def describe(self) -> str:
        counts = ", ".join(f"{o}={n}" for o, n in self.summary.counts.items())
        return (
            f"Balance All run {self.run_id}: {self.status}; {self.summary.accounts_checked} accounts ({counts}); "
            f"sum |difference| {self.summary.sum_abs_difference}, net {self.summary.net_difference}; "
            f"corrections {self.summary.corrections_made} made, {self.summary.corrections_failed} failed"
        )


class ThresholdExceeded(FlowError):
    """`cis_error` above the biller's threshold: the CIS is likely down. The report is stored."""

    retry = True

    def __init__(self, report: RunReport, threshold_pct: float) -> None:
        super().__init__(
            f"{report.summary.counts[Outcome.CIS_ERROR]} of {report.summary.accounts_checked} accounts "
            f"({report.summary.error_rate_pct():.1f} %) could not be checked against the CIS, above the "
            f"threshold of {threshold_pct:g} %; report stored as run {report.run_id}"
        )
        self.report = report


def run_balance_all(
    *,
    biller_id: str,
    week: str,
    accounts: Iterable[IcAccount],
    cis_lookup: CisLookup,
    ic_side: IcSide | None,
    settings: Settings,
    error_threshold_pct: float,
    store: ReconcileStore,
    dag_run_id: str | None = None,
    batch_size: int = 500,
) -> RunReport:
    """Check every account and store the report; raise :class:`ThresholdExceeded` after
    storing when too many accounts are `cis_error`. Any other failure (IC down) stores the
    run as `failed` with the reason and propagates."""
    run_id = store.start_run(
        biller_id,
        week,
        dag_run_id=dag_run_id,
        dry_run=settings.dry_run,
        corrections_allowed=settings.corrections_allowed,
        error_threshold_pct=error_threshold_pct,
    )
    batch: list[Item] = []

    def keep(item: Item) -> None:
        if item.outcome is Outcome.MATCH:
            return  # matches are only counted
        batch.append(item)
        if len(batch) >= batch_size:
            store.add_items(run_id, batch)
            batch.clear()

    reconciler = Reconciler(cis_lookup, ic_side, settings)
    summary = Summary()
    try:
        reconciler.run(accounts, keep, summary=summary)
        store.add_items(run_id, batch)
    except BaseException as exc:
        store.add_items(run_id, batch)  # what was checked stays visible
        store.finish_run(run_id, summary, FAILED, f"{type(exc).__name__}: {exc}")
        raise
    exceeded = summary.threshold_exceeded(error_threshold_pct)
    status = FAILED_THRESHOLD if exceeded else SUCCEEDED
    report = RunReport(run_id, status, summary)
    message = None
    if exceeded:
        message = str(ThresholdExceeded(report, error_threshold_pct))
    store.finish_run(run_id, summary, status, message)
    log.info(report.describe())
    if exceeded:
        raise ThresholdExceeded(report, error_threshold_pct)
    return report
