"""Batch operators of the `<biller>__balances`, `__payments` and `__customer_changes` DAGs.

Thin shells over icbridge.flows.{balances,payments,customer_changes}: build the IC and CIS
clients from the biller's connections, take the run's data interval, run the flow, log the
summary (accounts masked) and return it. What a run reads comes from the watermark
(:func:`icbridge.flows.windows.run_watermarked`: the gap since the last covered point plus a
lookback, in bounded windows). A :class:`~icbridge.flows.sync_common.SyncFailed`
becomes ``AirflowException`` (Airflow retries: safe, nothing is sent twice) or
``AirflowFailException`` (no retry: a person must settle a payment first).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, policy_for
from icbridge.flows.windows import ReadPlan, last_complete_period, run_watermarked
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.state import state_db_url
from icbridge.operators.common import BillerOperator, final_errors, task_execution
from icbridge.state.payments import PaymentLedger
from icbridge.state.watermarks import SyncItems, Watermarks

log = logging.getLogger(__name__)


def _aware(moment: datetime) -> datetime:
    return datetime.fromisoformat(moment.isoformat())


def run_interval(context: Any, biller: BillerConfig, schedule: str) -> Interval:
    """The run's data interval. A manual run on a DST day can get an empty one from Airflow
    (CronDataIntervalTimetable 3.3.2, a cron that skips hours): it then covers the last
    complete period of ``schedule`` before it was triggered."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise AirflowFailException("this run has no data interval; these DAGs need one (a cron timetable)")
    start, end = _aware(start), _aware(end)
    if start < end:
        return Interval(start, end)
    # the moment the manual run stands for: its logical date (a UI trigger: the trigger time)
    at = _aware(context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None) or end)
    interval = last_complete_period(schedule, biller.tz, at)
    log.warning("empty data interval %s .. %s (a DST day): the run covers the last complete period %s",
                start.isoformat(), end.isoformat(), interval)
    return interval


class _SyncOperator(BillerOperator):
    """Base: checks the biller has a CIS web service, runs ``self.flow`` over the watermarked
    read plan and reports."""

    ui_color = "#eef3fb"
    flow_name = ""

    def flow(self, biller: BillerConfig, plan: ReadPlan, context: Any) -> SyncReport:
        raise NotImplementedError

    @final_errors
    def execute(self, context: Any) -> dict[str, Any]:
        biller = self.biller()
        if self.flow_name not in biller.flows():
            raise AirflowFailException(f"biller {biller.biller_id} has no {self.flow_name} flow (its cis "
                                       f"{biller.cis} and cis_service / sync sections)")
        interval = run_interval(context, biller, getattr(biller.sync_settings(), f"{self.flow_name}_schedule"))
        store = Watermarks(state_db_url())
        items = SyncItems(engine=store.engine)
        try:
            report = run_watermarked(biller=biller, flow=self.flow_name, own=interval, store=store, items=items,
                                     run_id=context.get("run_id"), work=lambda plan: self.flow(biller, plan, context))
        except SyncFailed as exc:  # retried or final by exc.retry (final_errors)
            self._log_report(exc.report, error=True)
            raise
        finally:
            store.dispose()
        self._log_report(report)
        return report.to_dict()

    def _log_report(self, report: SyncReport, error: bool = False) -> None:
        log = self.log.error if error else self.log.info
        log("%s", report.describe())
        for line in report.lines():
            log("%s", line)


class BalancesOperator(_SyncOperator):
    """RTDR for the interval's active accounts (rules 1, 2, 3, 7)."""

    flow_name = "balances"

    def flow(self, biller: BillerConfig, plan: ReadPlan, context: Any) -> SyncReport:
        from icbridge.flows.balances import run_balances

        ledger, items = PaymentLedger(state_db_url()), SyncItems(state_db_url())
        try:
            return run_balances(
                biller=biller,
                ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
                cis=biller.vendor().connect(biller),
                interval=plan.span,
                windows=plan.windows,
                policy=policy_for(biller),
                ledger=ledger,
                items=items,
                run_id=context.get("run_id"),
            )
        finally:
            ledger.dispose()
            items.dispose()


class PaymentsOperator(_SyncOperator):
    """The interval's IC payments to the CIS, once each per PaymentGUID (rules 4, 5)."""

    ui_color = "#fdf1e1"
    flow_name = "payments"

    def flow(self, biller: BillerConfig, plan: ReadPlan, context: Any) -> SyncReport:
        from icbridge.flows.payments import run_payments

        ledger = PaymentLedger(state_db_url())
        # one token per execution (not per try): a row left 'sending' by any earlier execution,
        # the same try executed twice included, is in doubt, never re-sent
        try:
            with task_execution(context, ledger.engine) as execution:
                return run_payments(
                    biller=biller,
                    ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
                    cis=biller.vendor().connect(biller),
                    ledger=ledger,
                    interval=plan.span,
                    windows=plan.windows,
                    reported_before=min(plan.own.start, plan.watermark) if plan.watermark else None,
                    run_id=execution.token,
                    policy=policy_for(biller),
                )
        finally:
            ledger.dispose()


class CustomerChangesOperator(_SyncOperator):
    """The interval's IC change log to the CIS setters (paperless, autopay, inHance email)."""

    flow_name = "customer_changes"

    def flow(self, biller: BillerConfig, plan: ReadPlan, context: Any) -> SyncReport:
        from icbridge.flows.customer_changes import run_customer_changes

        items = SyncItems(state_db_url())
        try:
            return run_customer_changes(
                biller=biller,
                ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
                cis=biller.vendor().connect(biller),
                interval=plan.span,
                windows=plan.windows,
                policy=policy_for(biller),
                items=items,
                run_id=context.get("run_id"),
            )
        finally:
            items.dispose()
