"""`<biller>__payments`: IC payments of the interval -> inHance MakePaymentExtended / AUS AddPendingPayment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild._sync import build_sync_dag, wanted
from icbridge.operators.sync import PaymentsOperator

DOC = """
### {name} (BID {bid}): payments Invoice Cloud → {cis_label} ({method})

Every run (`{schedule}`, {timezone}): IC `ListPayments` of the run's interval; each payment is
sent **at most once per PaymentGUID** (state DB table `icb_payment_posts`), across retries,
re-runs and backfills. Channels not sent: {skipped}. Rule 4: a conveyed account
`…CV-<date-time>` is sent without the suffix.{rule5}

* **In doubt** (timeout, dropped connection, HTTP 500 or SOAP fault after sending): never sent
  again automatically; the run finishes the others, then **fails naming the PaymentGUIDs**.
  Check the CIS, then `python -m icbridge payments settle --biller {biller_id} --payment-guid G
  --outcome posted|resend|ignore`.
* **Refused** by the CIS: recorded with its message, not resent, the run fails naming it.
* **Not sent** (CIS not reachable at all): the run fails and Airflow's retry sends them.
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    if not wanted(biller, "payments"):
        return None
    cis, sync = biller.cis_service, biller.sync_settings()
    assert cis is not None
    cis_vendor = biller.vendor()
    doc = DOC.format(
        name=biller.name, bid=biller.bid, biller_id=biller.biller_id, schedule=sync.payments_schedule,
        timezone=biller.timezone, cis_label=cis_vendor.label, method=f"`{cis_vendor.payment_method}`",
        skipped=", ".join(sync.payments_skip_channels) or "none",
        rule5=cis_vendor.payment_rules(cis),
    )
    return build_sync_dag(
        biller, billers_dir, flow="payments", schedule=sync.payments_schedule,
        description=f"{biller.name}: IC payments → {cis_vendor.label} (once per PaymentGUID)",
        doc=doc, operator=PaymentsOperator, max_active_runs=1, execution_timeout=timedelta(minutes=60),
    )
