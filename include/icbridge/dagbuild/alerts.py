"""`icbridge__alerts`: every 15 minutes, the fleet's health becomes alerts (operators/alerts.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from icbridge.operators.alerts import HealthAlertsOperator

DAG_ID = "icbridge__alerts"
SCHEDULE = "*/15 * * * *"

DOC = """
### Alerts: what did not happen, or went wrong, reaches a person

Every 15 minutes: each biller flow's health (late: an expected AUS export did not come; behind:
past its lag bound; failed; items in doubt; files rejected) opens an incident and sends one alert
through the biller's alert routes (`alerts` in the biller file, default email to `alert_emails`
through the Airflow connection `icb_alerts_smtp`); one more when it clears. A retry of a flow
sends nothing: an incident is the condition, not a task attempt. Runbook: docs/operations.md.
"""


def build(billers_dir: str | None = None) -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="The fleet's health as alerts, once per incident, through Airflow's notifiers",
        doc_md=DOC,
        schedule=SCHEDULE,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["icbridge", "alerts"],
        default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1),
                      "execution_timeout": timedelta(minutes=10)},
    ) as dag:
        HealthAlertsOperator(task_id="alerts", billers_dir=billers_dir)
    return dag
