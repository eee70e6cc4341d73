"""One DAG file for every biller: reads include/billers/*.yaml and builds each biller's DAGs.

Parse-time work is reading and validating the YAML only (no network, no DB). A broken
biller file does not take the others down: it becomes a `<file>__config_error` DAG whose
description and docs name the file and the field, and whose only task fails with the error.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param

from icbridge.config.biller import BillerConfig, default_billers_dir, load_billers
from icbridge.operators.callbacks import notify_failure
from icbridge.operators.invoices import FindAusFilesOperator, UploadAusFileOperator

START = datetime(2026, 1, 1)

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


def default_args(biller: BillerConfig) -> dict:
    return {
        "owner": biller.owner,
        "retries": biller.retries,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": notify_failure,
        "email": biller.alert_emails or None,
        "email_on_failure": bool(biller.alert_emails),
        "email_on_retry": False,
    }


def build_invoices_dag(biller: BillerConfig, billers_dir: Path) -> DAG:
    inv = biller.invoices
    with DAG(
        dag_id=f"{biller.biller_id}__invoices",
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
        start_date=START.replace(tzinfo=biller.tz),
        catchup=False,
        max_active_runs=1,
        tags=[f"biller:{biller.biller_id}", f"bid:{biller.bid}", f"cis:{biller.cis}", "flow:invoices"],
        default_args=default_args(biller),
        params={
            "force": Param(False, type="boolean", description="Upload again files that were uploaded before"),
        },
        render_template_as_native_obj=True,
    ) as dag:
        common = {"biller_id": biller.biller_id, "billers_dir": str(billers_dir)}
        files = FindAusFilesOperator(task_id="find_files", **common)
        UploadAusFileOperator.partial(
            task_id="upload_file",
            force="{{ params.force }}",
            max_active_tis_per_dagrun=4,
            map_index_template="{{ task.file_name }}",
            **common,
        ).expand(file_name=files.output)
    return dag


def build_config_error_dag(path: Path, message: str) -> DAG:
    """A visible stand-in for a biller file that does not validate."""
    from airflow.providers.standard.operators.python import PythonOperator

    def fail() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(message)

    first_line = message.splitlines()[0]
    with DAG(
        dag_id=f"{path.stem}__config_error",
        description=f"BROKEN biller file: {first_line}"[:200],
        doc_md=f"### Biller file `{path.name}` does not validate\n\n```\n{message}\n```\n\nFix the file; the "
        "biller's DAGs come back on the next parse.",
        schedule=None,
        start_date=START,
        catchup=False,
        tags=["config-error"],
        default_args={"owner": "data-engineering", "retries": 0},
    ) as dag:
        PythonOperator(task_id="config_error", python_callable=fail)
    return dag


def build_all(billers_dir: Path) -> dict[str, DAG]:
    loaded = load_billers(billers_dir)
    dags: dict[str, DAG] = {}
    for biller in loaded.billers:
        if biller.invoices is not None and biller.cis == "aus":
            dag = build_invoices_dag(biller, billers_dir)
            dags[dag.dag_id] = dag
    for path, message in loaded.errors.items():
        dag = build_config_error_dag(path, message)
        dags[dag.dag_id] = dag
    return dags


globals().update(build_all(default_billers_dir()))
