"""What the three web-service sync DAG builders share (balances, payments, customer changes).

Each DAG: one batch task over the run's *data interval* (a CronDataIntervalTimetable in the
biller's time zone, so a run for 10:00 covers [10:00, 10:15)), read from the flow's watermark
(flows/windows.py: the gap after downtime plus a lookback), catchup off, built only for inHance/AUS billers with a
``cis_service`` and the flow enabled in ``sync.flows``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from icbridge.config.biller import BillerConfig
from icbridge.dagbuild.common import biller_dag
from icbridge.dagbuild.pools import pool_args

FOOTER = """
* **Watermark**: each run reads from where the flow last got to (the whole gap after downtime)
  minus a lookback of {lookback} min for late data, in IC calls of at most {window} min, up to
  its interval's end; what was handled before is never sent again. A live run still more than
  {max_lag} min behind fails naming the gap. What each outcome means, and what each CIS fault
  does to a run: docs/sync-flows.md. Runbook: docs/operations.md.
* Bounds: {in_flight} CIS calls in flight, {per_second:g}/s, timeout {timeout:g} s; reads and
  setters retried {attempts}x on transport faults.
* Config: `include/billers/{biller_id}.yaml` (`cis_service`, `sync`). Connections: `{ic_conn_id}` (IC),
  {cis_conns} (CIS).
"""


def wanted(biller: BillerConfig, flow: str) -> bool:
    return flow in biller.flows()


def build_sync_dag(
    biller: BillerConfig,
    billers_dir: Path,
    *,
    flow: str,
    schedule: str,
    description: str,
    doc: str,
    operator: type,
    max_active_runs: int,
    execution_timeout: timedelta,
) -> DAG:
    cis, sync = biller.cis_service, biller.sync_settings()
    assert cis is not None
    footer = FOOTER.format(
        in_flight=cis.calls_in_flight, per_second=cis.calls_per_second, timeout=cis.timeout_seconds,
        attempts=sync.attempts, biller_id=biller.biller_id, ic_conn_id=biller.ic_conn_id,
        lookback=sync.lookback_minutes, window=sync.max_read_window_minutes, max_lag=sync.max_lag_minutes,
        cis_conns=", ".join(f"`{c}`" for c in cis.conn_ids()),
    )
    with biller_dag(
        biller,
        flow,
        description=description,
        doc_md=doc + footer,
        schedule=CronDataIntervalTimetable(schedule, timezone=biller.timezone),
        max_active_runs=max_active_runs,
    ) as dag:
        operator(
            task_id=flow,
            biller_id=biller.biller_id,
            billers_dir=str(billers_dir),
            execution_timeout=execution_timeout,
            **pool_args(biller, f"{biller.biller_id}__{flow}"),
        )
    return dag
