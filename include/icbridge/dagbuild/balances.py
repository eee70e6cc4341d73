"""`<biller>__balances` (RTDR): CIS balances of the interval's active accounts -> Invoice Cloud."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild._sync import build_sync_dag, wanted
from icbridge.operators.sync import BalancesOperator

DOC = """
### {name} (BID {bid}): balances (RTDR) {cis_label} → Invoice Cloud

Every run (`{schedule}`, {timezone}): the accounts active in the run's interval — a payment in
IC `ListPayments`{changes} — are asked of the CIS ({cis_call}) and IC is updated: `UpdateInvoiceBalance`
(BalanceDue = Balance{rule1}){rules}. An account whose payment of the interval is not yet posted
to the CIS by `{biller_id}__payments` is deferred (its CIS balance would undo the payment in IC).

* **Rule 3**: a business refusal (`Success=false`, not found) is recorded and the run goes on.
* **Fails** only when no CIS call got through (the CIS looks down); Airflow retries it.
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    if not wanted(biller, "balances"):
        return None
    cis, sync = biller.cis_service, biller.sync_settings()
    assert cis is not None
    cis_vendor = biller.vendor()
    rule1, rules = cis_vendor.balances_rules(cis)
    doc = DOC.format(
        name=biller.name, bid=biller.bid, biller_id=biller.biller_id, schedule=sync.balances_schedule,
        timezone=biller.timezone, cis_label=cis_vendor.label,
        changes=" or `ListChangeLog`" if sync.balances_from_change_log else "",
        cis_call=cis_vendor.balance_call_doc(), rule1=rule1, rules=rules,
    )
    return build_sync_dag(
        biller, billers_dir, flow="balances", schedule=sync.balances_schedule,
        description=f"{biller.name}: RTDR balances {cis_vendor.label} → Invoice Cloud",
        doc=doc, operator=BalancesOperator, max_active_runs=1, execution_timeout=timedelta(minutes=60),
    )
