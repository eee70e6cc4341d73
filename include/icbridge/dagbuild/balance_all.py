"""`<biller>__balance_all`: the weekly IC-vs-CIS reconciliation (inHance and AUS billers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild.common import biller_dag
from icbridge.dagbuild.pools import pool_args
from icbridge.operators.balance_all import BalanceAllOperator

BALANCE_ALL_DOC = """
### {name} (BID {bid}): Balance All — do IC balances match the {cis_label}?

Weekly (`{schedule}`, {timezone}) and on demand: every open IC invoice (`ListOpenInvoices`),
each account asked of the CIS ({cis_call}; {in_flight} calls in flight, {per_second:g}/s), compared
to the cent{rules}. Outcomes: `match`, `balance_mismatch`, `flags_mismatch`, `missing_in_cis`, `cis_error`.

* **Corrections**: {corrections}. Set the `dry_run` param to change nothing (the plan is still reported).
* **Fails** (after storing the report) when `cis_error` is above {threshold:g} % of the accounts:
  the CIS is likely down.
* **Report**: Browse › Balance All in this UI (charts, items, CSV/XLSX), or SQL on the state DB
  tables `icb_balance_runs` / `icb_balance_items` (docs/balance-all.md).
* Config: `include/billers/{biller_id}.yaml` (`balance_all`, `cis_service`). Connections: `{ic_conn_id}` (IC),
  `{cis_conn_id}` (CIS).
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    config, cis = biller.balance_all, biller.cis_service
    if config is None or cis is None or "balance_all" not in biller.flows():
        return None
    cis_vendor = biller.vendor()
    rules = cis_vendor.balance_all_rules(cis)
    with biller_dag(
        biller,
        "balance_all",
        description=f"{biller.name}: weekly IC vs {cis_vendor.label} balance reconciliation",
        doc_md=BALANCE_ALL_DOC.format(
            name=biller.name,
            bid=biller.bid,
            cis_label=cis_vendor.label,
            schedule=config.schedule,
            timezone=biller.timezone,
            cis_call=cis_vendor.balance_method,
            in_flight=cis.calls_in_flight,
            per_second=cis.calls_per_second,
            rules=rules,
            corrections="IC is corrected (UpdateInvoiceBalance / UpdateCustomerRecord), before and after recorded"
            if config.corrections_allowed
            else "not allowed for this biller (report only)",
            threshold=config.error_threshold_pct,
            biller_id=biller.biller_id,
            ic_conn_id=biller.ic_conn_id,
            cis_conn_id=cis.conn_id,
        ),
        schedule=config.schedule,
        params={
            "dry_run": Param(False, type="boolean", description="Compare and report only: correct nothing in IC"),
        },
    ) as dag:
        BalanceAllOperator(
            task_id="balance_all",
            biller_id=biller.biller_id,
            billers_dir=str(billers_dir),
            execution_timeout=timedelta(hours=6),
            **pool_args(biller, f"{biller.biller_id}__balance_all"),
        )
    return dag
