"""`<biller>__customer_changes`: IC change log of the interval -> the CIS paperless/autopay/email setters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild._sync import build_sync_dag, wanted
from icbridge.operators.sync import CustomerChangesOperator

DOC = """
### {name} (BID {bid}): customer changes Invoice Cloud → {cis_label}

Every run (`{schedule}`, {timezone}): IC `ListChangeLog` of the run's interval; the last change of
each kind per account is sent: {mapping}. Rule 4: conveyed accounts are sent without the suffix.

* The setters are idempotent: transport faults are retried; a change still failing makes the run
  fail after all others were sent, and Airflow's retry sends the interval again (safe).
* A business refusal (account not found, refused value) is recorded; the run goes on.
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    if not wanted(biller, "customer_changes"):
        return None
    sync = biller.sync_settings()
    cis_vendor = biller.vendor()
    doc = DOC.format(
        name=biller.name, bid=biller.bid, schedule=sync.customer_changes_schedule, timezone=biller.timezone,
        cis_label=cis_vendor.label, mapping=cis_vendor.change_mapping(),
    )
    return build_sync_dag(
        biller, billers_dir, flow="customer_changes", schedule=sync.customer_changes_schedule,
        description=f"{biller.name}: IC change log → {cis_vendor.label}",
        doc=doc, operator=CustomerChangesOperator, max_active_runs=1, execution_timeout=timedelta(minutes=60),
    )
