"""What the DAG tests share: the sync flows' DAG builders, a biller shaped like the demo ones,
and the states of a run's tasks (for assertion messages)."""

from __future__ import annotations

from icbridge.dagbuild import balances, customer_changes, payments

SYNC_BUILDERS = {"balances": balances, "payments": payments, "customer_changes": customer_changes}


def demo_shaped(cis: str, bid: str) -> dict:
    """Like include/billers/demo_<cis>.yaml (no invoices section needed here)."""
    service = {"conn_id": f"t_{cis}_cis", "calls_in_flight": 4, "calls_per_second": 50, "timeout_seconds": 1}
    if cis == "inhance":
        service.update(method_conn_ids={"MakePaymentExtended": "t_inhance_cis_payments"}, rtdr_version=2)
    return {"biller_id": f"t_{cis}", "bid": bid, "name": f"Test {cis}", "cis": cis, "ic_conn_id": "t_ic",
            "retries": 0, "cis_service": service, "sync": {"backoff_seconds": 0}}


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
