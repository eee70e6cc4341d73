"""Operator of the `<biller>__balance_all` DAG: a thin shell over icbridge.flows.balance_all.

Builds the IC client (connection ``ic_conn_id``), the CIS client (the biller's ``cis_service``:
inHance BalanceCheck or AUS GetAccountData) and the state store, runs the reconciliation and
turns its outcomes into task states: success; failure after the report is stored when
`cis_error` is above the threshold (retried: the CIS may be back); failure at once when IC
breaks its ordering contract.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from icbridge.flows.balance_all import ThresholdExceeded, iso_week, run_balance_all
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.state import state_db_url
from icbridge.operators.common import BillerOperator, final_errors, recorded_outcome, run_flag
from icbridge.reconcile.engine import Limits, Settings
from icbridge.reconcile.invoice_cloud import InvoiceCloudSide, ic_accounts
from icbridge.state.reconcile import ReconcileStore


class BalanceAllOperator(BillerOperator):
    """Reconcile every open IC invoice of the biller against its CIS; store the report."""

    template_fields: Collection[str] = ("biller_id", "dry_run_param")
    ui_color = "#e9f5ec"

    def __init__(self, *, dry_run: bool | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run_param = dry_run  # not self.dry_run: that is BaseOperator's method

    @final_errors
    def execute(self, context: Any) -> dict[str, Any]:
        biller = self.biller()
        config, cis = biller.balance_all, biller.cis_service
        if config is None or cis is None:
            raise AirflowFailException(f"biller {biller.biller_id} has no balance_all / cis_service section")
        dry_run = run_flag(context, "dry_run", self.dry_run_param)
        lookup, rules = biller.vendor().balance_all_lookup(biller)
        settings = Settings(
            rules=rules,
            limits=Limits(
                max_in_flight=cis.calls_in_flight,
                calls_per_second=cis.calls_per_second,
                attempts=config.attempts,
                backoff_seconds=config.backoff_seconds,
                backoff_max_seconds=config.backoff_max_seconds,
            ),
            corrections_allowed=config.corrections_allowed,
            dry_run=dry_run,
        )
        ic_client = InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn()
        moment = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None) or datetime.now(UTC)
        store = ReconcileStore(state_db_url())
        self.log.info(
            "Balance All for %s (%s): corrections %s%s, threshold %g %%, %d calls in flight, %g calls/s",
            biller.biller_id, biller.cis, "allowed" if config.corrections_allowed else "not allowed",
            " (dry run: nothing is changed)" if dry_run else "", config.error_threshold_pct,
            cis.calls_in_flight, cis.calls_per_second,
        )
        try:
            with recorded_outcome(biller.biller_id, "balance_all", context.get("run_id")):  # over the threshold: failed
                report = run_balance_all(
                    biller_id=biller.biller_id,
                    week=iso_week(moment, biller.tz),
                    accounts=ic_accounts(ic_client.lean(), config.page_size),
                    cis_lookup=lookup,
                    ic_side=InvoiceCloudSide(ic_client),
                    settings=settings,
                    error_threshold_pct=config.error_threshold_pct,
                    store=store,
                    dag_run_id=context.get("run_id"),
                )
        except ThresholdExceeded as exc:  # retried (final_errors): the CIS is likely down
            self.log.error("%s", exc.report.describe())
            raise
        finally:
            store.dispose()
        self.log.info("%s", report.describe())
        summary = report.summary
        return {
            "report_run_id": report.run_id,
            "status": report.status,
            "accounts_checked": summary.accounts_checked,
            **{str(outcome): count for outcome, count in summary.counts.items()},
            "sum_abs_difference": str(summary.sum_abs_difference),
            "net_difference": str(summary.net_difference),
            "corrections_made": summary.corrections_made,
            "dry_run": dry_run,
        }
