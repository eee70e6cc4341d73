"""What every biller DAG shares: start date, default args, tags, the config-error stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig
from icbridge.operators.callbacks import notify_failure

START = datetime(2026, 1, 1)


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


def tags(biller: BillerConfig, flow: str) -> list[str]:
    return [f"biller:{biller.biller_id}", f"bid:{biller.bid}", f"cis:{biller.cis}", f"flow:{flow}"]


def start_date(biller: BillerConfig) -> datetime:
    return START.replace(tzinfo=biller.tz)


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
