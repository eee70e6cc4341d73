"""What every biller DAG shares: start date, default args, tags, the DAG itself (biller_dag), the
config-error stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig
from icbridge.operators.callbacks import notify_failure

START = datetime(2026, 1, 1)
DEFAULT_EXECUTION_TIMEOUT = timedelta(hours=4)
"""A task's limit unless its flow sets one: below the Celery visibility timeout (docs/deployment.md)."""


def default_args(biller: BillerConfig) -> dict:
    return {
        "owner": biller.owner,
        "retries": biller.retries,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": notify_failure,
        # alerts go through the icbridge__alerts DAG, once per incident (docs/operations.md); Airflow's
        # own failure mail would add one per failed run
        "email_on_failure": False,
        "email_on_retry": False,
        # every task ends well before the broker's visibility timeout (docker-compose.yaml: 86,400 s), after
        # which Celery on Redis would hand a still-running task to a second worker; flows set tighter ones
        "execution_timeout": DEFAULT_EXECUTION_TIMEOUT,
    }


def tags(biller: BillerConfig, flow: str) -> list[str]:
    return [f"biller:{biller.biller_id}", f"bid:{biller.bid}", f"cis:{biller.cis}", f"flow:{flow}"]


def start_date(biller: BillerConfig) -> datetime:
    return START.replace(tzinfo=biller.tz)


def biller_dag(
    biller: BillerConfig,
    flow: str,
    *,
    schedule: Any,
    description: str,
    doc_md: str,
    params: dict[str, Any] | None = None,
    max_active_runs: int = 1,
) -> DAG:
    """The ``<biller>__<flow>`` DAG with what every biller DAG shares (start date, no catchup, tags,
    default args); use it as ``with biller_dag(...) as dag:``. With ``params`` (the DAG's
    trigger-time switches), templates render as native objects so a boolean param stays a bool."""
    return DAG(
        dag_id=f"{biller.biller_id}__{flow}",
        description=description,
        doc_md=doc_md,
        schedule=schedule,
        start_date=start_date(biller),
        catchup=False,
        max_active_runs=max_active_runs,
        tags=tags(biller, flow),
        default_args=default_args(biller),
        params=params,
        render_template_as_native_obj=bool(params),
        access_control=access_control(biller),
    )


def access_control(biller: BillerConfig) -> dict[str, dict[str, set[str]]] | None:
    """The biller file's roles as the DAG's ``access_control`` (the FAB auth manager syncs it into
    per-DAG permissions): ``access_roles`` read, ``edit_roles`` read and edit (trigger, clear).
    None when the file names none (then only roles with rights on every DAG see the biller)."""
    control: dict[str, dict[str, set[str]]] = {}
    for role in biller.access_roles:
        control.setdefault(role, {"DAGs": set()})["DAGs"].add("can_read")
    for role in biller.edit_roles:
        control.setdefault(role, {"DAGs": set()})["DAGs"].update({"can_read", "can_edit"})
    return control or None


def build_config_error_dag(path: Path, message: str) -> DAG:
    """A visible stand-in for a biller file that does not validate."""
    from airflow.providers.standard.operators.python import PythonOperator

    def fail() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(message)

    problems = message.splitlines()
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    listed = "\n".join(f"* `{line}`" for line in problems)
    with DAG(
        dag_id=f"{path.stem}__config_error",
        description=f"BROKEN biller file ({count}): {' | '.join(problems)}"[:500],
        doc_md=f"### Biller file `{path.name}` does not validate ({count})\n\n{listed}\n\nFix the file; the "
        "biller's DAGs come back on the next parse.",
        # runs (and fails) as soon as it appears: red on the home page, like an import error
        schedule="@once",
        is_paused_upon_creation=False,
        start_date=START,
        catchup=False,
        tags=["config-error"],
        default_args={"owner": "data-engineering", "retries": 0, "execution_timeout": timedelta(minutes=5)},
    ) as dag:
        PythonOperator(task_id="config_error", python_callable=fail)
    return dag
