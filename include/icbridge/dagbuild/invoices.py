"""`<biller>__invoices`: AUS daily export TXT -> BIF -> UploadInvoiceFile."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild.common import biller_dag
from icbridge.dagbuild.pools import pool_args
from icbridge.operators.invoices import FindAusFilesOperator, UploadAusFileOperator

INVOICES_DOC = """
### {name} (BID {bid}): AUS invoices → Invoice Cloud

Every run: list `{inbox}` on the biller's {protocol} server, and for each new
`{bid}_{{STAMP}}_{{BillType}}.TXT`: download, map to BIF (rules: aus-ic-daily-export.md),
check, upload each part with `UploadInvoiceFile`, move the file to `{archive}`.

* **Idempotent**: a file (name + sha256) uploaded once is never uploaded again by a retry,
  re-run or backfill; set the `force` param to re-upload on purpose.
* **Rejects**: `summary.json` and `rejects.csv` of each file are in the task log and under
  `$ICBRIDGE_ARTIFACTS_DIR/<dag>/<run>/`.
* Config: `include/billers/{biller_id}.yaml`. Connections: `{ic_conn_id}` (IC),
  `{transfer_conn_id}` ({protocol}). Runbook: docs/operations.md.
"""


def build(biller: BillerConfig, billers_dir: Path) -> DAG | None:
    inv = biller.invoices
    if inv is None or "invoices" not in biller.flows():
        return None
    with biller_dag(
        biller,
        "invoices",
        description=f"{biller.name}: AUS daily export → BIF → Invoice Cloud",
        doc_md=INVOICES_DOC.format(
            name=biller.name,
            bid=biller.bid,
            biller_id=biller.biller_id,
            inbox=inv.transfer.inbox,
            archive=inv.transfer.archive_dir(),
            protocol=inv.transfer.protocol.upper(),
            ic_conn_id=biller.ic_conn_id,
            transfer_conn_id=inv.transfer.conn_id,
        ),
        schedule=inv.schedule,
        params={
            "force": Param(False, type="boolean", description="Upload again files that were uploaded before"),
        },
    ) as dag:
        common = {"biller_id": biller.biller_id, "billers_dir": str(billers_dir)}
        files = FindAusFilesOperator(task_id="find_files", **common)
        UploadAusFileOperator.partial(
            task_id="upload_file",
            max_active_tis_per_dagrun=4,
            map_index_template="{{ task.file_name }}",
            **common,
            **pool_args(biller, f"{biller.biller_id}__invoices.upload_file"),
        ).expand(file_name=files.output)
    return dag
