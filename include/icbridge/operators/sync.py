"""Batch operators of the `<biller>__balances`, `__payments` and `__customer_changes` DAGs.

Thin shells over icbridge.flows.{balances,payments,customer_changes}: build the IC and CIS
clients from the biller's connections, take the run's data interval, run the flow, log the
summary (accounts masked) and return it. A :class:`~icbridge.flows.sync_common.SyncFailed`
becomes ``AirflowException`` (Airflow retries: safe, nothing is sent twice) or
``AirflowFailException`` (no retry: a person must settle a payment first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, policy_for
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.state import state_db_url
from icbridge.operators.common import BillerOperator, cis_client
from icbridge.state.payments import PaymentLedger


def _interval(context: Any) -> Interval:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise AirflowFailException("this run has no data interval; these DAGs work on their interval only")
    return Interval(datetime.fromisoformat(start.isoformat()), datetime.fromisoformat(end.isoformat()))


class _SyncOperator(BillerOperator):
    """Base: checks the biller has a CIS web service, runs ``self.flow`` and reports."""

    ui_color = "#eef3fb"

    def flow(self, biller: BillerConfig, interval: Interval, context: Any) -> SyncReport:
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        biller = self.biller()
        if biller.cis_service is None or biller.cis not in ("inhance", "aus"):
            raise AirflowFailException(f"biller {biller.biller_id} has no inHance/AUS cis_service section")
        interval = _interval(context)
        try:
            report = self.flow(biller, interval, context)
        except SyncFailed as exc:
            self._log_report(exc.report, error=True)
            if exc.retry:
                raise AirflowException(str(exc)) from None
            raise AirflowFailException(str(exc)) from None
        self._log_report(report)
        return report.to_dict()

    def _log_report(self, report: SyncReport, error: bool = False) -> None:
        log = self.log.error if error else self.log.info
        log("%s", report.describe())
        for line in report.lines():
            log("%s", line)


class BalancesOperator(_SyncOperator):
    """RTDR for the interval's active accounts (rules 1, 2, 3, 7)."""

    def flow(self, biller: BillerConfig, interval: Interval, context: Any) -> SyncReport:
        from icbridge.flows.balances import run_balances

        ledger = PaymentLedger(state_db_url())
        try:
            return run_balances(
                biller=biller,
                ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
                cis_client=cis_client(biller),
                interval=interval,
                policy=policy_for(biller),
                ledger=ledger,
            )
        finally:
            ledger.dispose()


class PaymentsOperator(_SyncOperator):
    """The interval's IC payments to the CIS, once each per PaymentGUID (rules 4, 5)."""

    ui_color = "#fdf1e1"

    def flow(self, biller: BillerConfig, interval: Interval, context: Any) -> SyncReport:
        from icbridge.flows.payments import run_payments

        ti = context.get("ti")
        # one token per task try: a row left 'sending' by an earlier try is in doubt, never re-sent
        run_token = f"{context['run_id']}#try{getattr(ti, 'try_number', 0)}"
        ledger = PaymentLedger(state_db_url())
        try:
            return run_payments(
                biller=biller,
                ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
                cis_client=cis_client(biller),
                ledger=ledger,
                interval=interval,
                run_id=run_token,
                policy=policy_for(biller),
            )
        finally:
            ledger.dispose()


class CustomerChangesOperator(_SyncOperator):
    """The interval's IC change log to the CIS setters (paperless, autopay, inHance email)."""

    def flow(self, biller: BillerConfig, interval: Interval, context: Any) -> SyncReport:
        from icbridge.flows.customer_changes import run_customer_changes

        return run_customer_changes(
            biller=biller,
            ic=InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn(),
            cis_client=cis_client(biller),
            interval=interval,
            policy=policy_for(biller),
        )
