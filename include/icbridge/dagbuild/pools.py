"""One bound per endpoint, across every task of every biller: Airflow pools (issue 20).

A task that calls an endpoint many times at once takes a slot of that endpoint's pool per
call it may have in flight (``pool_slots``), so the calls one endpoint sees, summed over
every running task of every biller and flow, never exceed the pool's size — under the real
scheduler and on every Celery worker, by Airflow's own mechanism.

=========================  ===============================  ==========================================
pool                       who takes it                     slots a task takes
=========================  ===============================  ==========================================
``icb_invoice_cloud``      ``__invoices.upload_file``       ``invoices.upload_in_flight``
                           ``__payment_export``             1
``icb_cis_<endpoint>``     ``__balances``, ``__payments``,  ``cis_service.calls_in_flight``
                           ``__customer_changes``,
                           ``__balance_all``
=========================  ===============================  ==========================================

``<endpoint>`` is ``cis_service.endpoint`` (billers on one hosted endpoint name it alike), else
the biller's ``cis_service.conn_id``. Pools are used when ``ICBRIDGE_ENDPOINT_POOLS`` is true
in the dag-processor's environment (docker-compose.yaml sets it, and its init step creates the
pools with ``python -m icbridge pools``); otherwise tasks use Airflow's ``default_pool`` (the
demo, a laptop). A pool must exist before its tasks can run, and must have at least as many
slots as the largest ``pool_slots`` a task asks of it: ``python -m icbridge pools`` lists them
(docs/deployment.md, "Endpoint pools").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from icbridge.config.biller import BillerConfig

__all__ = ["IC_POOL", "POOLS_ENV", "PoolUse", "cis_pool", "enabled", "pool_args", "pools_used"]

IC_POOL = "icb_invoice_cloud"
POOLS_ENV = "ICBRIDGE_ENDPOINT_POOLS"


def enabled() -> bool:
    return os.environ.get(POOLS_ENV, "").strip().lower() in ("1", "true", "yes")


def cis_pool(biller: BillerConfig) -> str | None:
    cis = biller.cis_service
    if cis is None:
        return None
    return f"icb_cis_{cis.endpoint or cis.conn_id}"


@dataclass(frozen=True)
class PoolUse:
    pool: str
    slots: int
    task: str  # dag_id.task_id


def _uses(biller: BillerConfig) -> list[PoolUse]:
    uses = []
    if biller.invoices is not None:
        uses.append(PoolUse(IC_POOL, biller.invoices.upload_in_flight, f"{biller.biller_id}__invoices.upload_file"))
    if biller.payment_export is not None:
        uses.append(PoolUse(IC_POOL, 1, f"{biller.biller_id}__payment_export.export_and_deliver"))
    pool = cis_pool(biller)
    if pool is not None and biller.cis_service is not None:
        flows = [*biller.sync_flows(), *(["balance_all"] if biller.balance_all is not None else [])]
        uses += [PoolUse(pool, biller.cis_service.calls_in_flight, f"{biller.biller_id}__{flow}") for flow in flows]
    return uses


def pool_args(biller: BillerConfig, task: str) -> dict:
    """``pool`` / ``pool_slots`` for the task ``<dag_id>.<task_id>`` (or a flow's only task,
    named by its DAG id), when endpoint pools are on; {} otherwise."""
    if not enabled():
        return {}
    for use in _uses(biller):
        if use.task == task:
            return {"pool": use.pool, "pool_slots": use.slots}
    return {}


def pools_used(billers: list[BillerConfig]) -> dict[str, list[PoolUse]]:
    """Pool -> every task use of it, for ops to size and create the pools."""
    out: dict[str, list[PoolUse]] = {}
    for biller in billers:
        for use in _uses(biller):
            out.setdefault(use.pool, []).append(use)
    return out
