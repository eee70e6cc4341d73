"""`<biller>__payment_export`: Logis CloudPay Payment Export File, daily after batch closure."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param
from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild.common import biller_dag
from icbridge.dagbuild.pools import pool_args
from icbridge.masking import mask_email
from icbridge.operators.payment_export import PaymentExportOperator

PAYMENT_EXPORT_DOC = """
### {name} (BID {bid}): CloudPay Payment Export File → Logis

Runs `{schedule}` ({timezone}). Each run exports the last business day closed (23:59
{timezone}) at or before its logical date: every IC `ListPayments` payment of channel
`{channel}` with D-1 23:59 < PaymentDate ≤ D 23:59 local (23- and 25-hour days included),
as `{bid}_YYYYMMDD_CLOUDPAY.CSV`, delivered by **{delivery}** to {where}.

* **No day skipped**: a run first exports every business day missed since the last one
  exported (downtime: Airflow creates no runs for it), oldest first; more than
  {max_catchup} days missing fails the run naming the `airflow backfill create` command.
* **Once**: every delivery is recorded in the state DB; a retry, re-run or backfill
  rebuilds the same bytes and does not send them again. Set the `redeliver` param to send
  again on purpose.
* **In doubt**: an interrupted FTP-family delivery is checked on the server (final name,
  size, sha256); an interrupted email stops the run for a person (docs/payment-export.md).
* Days without payments {empty}.
* Config: `include/billers/{biller_id}.yaml`. Connections: `{ic_conn_id}` (IC), `{conn_id}`.
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    pe = biller.payment_export
    if pe is None or "payment_export" not in biller.flows():
        return None
    if pe.delivery == "email":
        where = ", ".join(mask_email(a) for a in pe.email_to)
    else:
        where = f"`{pe.folder}` on the biller's {pe.delivery.upper()} server"
    with biller_dag(
        biller,
        "payment_export",
        description=f"{biller.name}: CloudPay payments → Logis Payment Export File ({pe.delivery})",
        doc_md=PAYMENT_EXPORT_DOC.format(
            name=biller.name,
            bid=biller.bid,
            schedule=pe.schedule,
            timezone=biller.timezone,
            channel=pe.channel,
            delivery=pe.delivery.upper(),
            where=where,
            empty="get a header+trailer file" if pe.empty_day_file else "get no file (empty_day_file off)",
            biller_id=biller.biller_id,
            ic_conn_id=biller.ic_conn_id,
            conn_id=pe.conn_id,
            max_catchup=pe.max_catchup_days,
        ),
        schedule=CronTriggerTimetable(pe.schedule, timezone=biller.timezone),
        params={
            "redeliver": Param(False, type="boolean", description="Deliver the day's file again even if delivered"),
        },
    ) as dag:
        PaymentExportOperator(
            task_id="export_and_deliver",
            biller_id=biller.biller_id,
            billers_dir=str(billers_dir),
            **pool_args(biller, f"{biller.biller_id}__payment_export.export_and_deliver"),
        )
    return dag
