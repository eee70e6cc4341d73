"""The `<biller>__balances`, `__payments` and `__customer_changes` DAGs run by Airflow
(dag.test()) for an inHance and an AUS biller shaped like the demo ones, against the IC,
inHance and AUS simulators over HTTP with AIRFLOW_CONN_* connections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from icbridge.state.payments import PaymentLedger
from tests.support.dags import SYNC_BUILDERS, task_states

pytestmark = pytest.mark.usefixtures("airflow_db")
_dates = iter(datetime(2026, 4, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(10_000))


def _result(dag_run, task_id: str):
    [ti] = [t for t in dag_run.get_task_instances() if t.task_id == task_id]
    return ti


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_dag_posts_the_interval_once(sync_world, cis):
    start = next(_dates)
    sync_world.ic.add_payment(sync_world.guid, "1001", "7001", "25.00", start + timedelta(minutes=3),
                              payment_type="PayPal")
    # the next interval:
    sync_world.ic.add_payment(sync_world.guid, "1002", "7002", "5.00", start + timedelta(minutes=20))
    dag = sync_world.dag(cis, "payments")
    assert dag.max_active_runs == 1 and not dag.catchup
    run = sync_world.run(dag, start)
    assert str(run.state) == "success", task_states(run)
    posted = sync_world.sims[cis].payments(f"t_{cis}")
    assert [(p["account_number"], p["amount"]) for p in posted] == [("1001", Decimal("25.00"))]
    if cis == "inhance":
        assert posted[0]["payment_type"] == "Credit Card"  # rule 5
    assert str(sync_world.run(dag, start).state) == "success"  # a re-run of the interval: nothing twice
    assert len(sync_world.sims[cis].payments(f"t_{cis}")) == 1
    assert [r.status for r in sync_world.ledger_rows(cis)] == ["posted"]


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_dag_fails_naming_an_in_doubt_payment(sync_world, cis):
    start = next(_dates)
    guid = sync_world.ic.add_payment(sync_world.guid, "1001", "7001", "25.00", start + timedelta(minutes=3))
    method = "MakePaymentExtended" if cis == "inhance" else "AddPendingPayment"
    sync_world.sims[cis].faults.set(method, kind="late", seconds=2, times=1)
    dag = sync_world.dag(cis, "payments")
    run = sync_world.run(dag, start)
    assert str(run.state) == "failed"
    assert task_states(run) == {"payments": "failed"}
    assert [(r.payment_guid, r.status) for r in sync_world.ledger_rows(cis)] == [(guid, "in_doubt")]
    assert len(sync_world.sims[cis].payments(f"t_{cis}")) == 1  # the CIS has it
    assert str(sync_world.run(dag, start).state) == "failed"  # a re-run does not send it again
    assert len(sync_world.sims[cis].payments(f"t_{cis}")) == 1


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_balances_dag_updates_active_accounts(sync_world, cis):
    start = next(_dates)
    sync_world.ic.add_change(sync_world.guid, "1002", "Paperless", "True", start + timedelta(minutes=1))
    dag = sync_world.dag(cis, "balances")
    run = sync_world.run(dag, start)
    assert str(run.state) == "success", task_states(run)
    invoice = next(i for i in sync_world.ic.invoices(sync_world.guid) if i["invoice_number"] == "7002")
    assert invoice["balance_due"] == Decimal("10.00")
    if cis == "aus":  # rule 7
        customer = next(c for c in sync_world.ic.customers(sync_world.guid) if c["account_number"] == "1002")
        assert customer["block_payments_cc"] and customer["block_payments_eft"]
    else:  # rule 1, version 2
        assert invoice["total_amount_due"] == Decimal("10.00")  # future_balance defaults to balance


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_customer_changes_dag_sends_the_interval(sync_world, cis):
    start = next(_dates)
    sync_world.ic.add_change(sync_world.guid, "1001", "AutoPay", "True", start + timedelta(minutes=10))
    sync_world.ic.add_change(sync_world.guid, "1002", "AutoPay", "True", start + timedelta(minutes=61))  # next interval
    dag = sync_world.dag(cis, "customer_changes")
    run = sync_world.run(dag, start, timedelta(hours=1))
    assert str(run.state) == "success", task_states(run)
    changes = sync_world.sims[cis].changes(f"t_{cis}")
    assert [(c["account_number"], c["field"]) for c in changes] == [("1001", "autopay")]


def test_sync_dags_follow_the_config(sync_world):
    dag = sync_world.dag("inhance", "balances", balances_schedule="*/5 * * * *", flows=["balances"])
    assert dag.dag_id == "t_inhance__balances"
    assert "flow:balances" in dag.tags and "cis:inhance" in dag.tags
    import pendulum

    info = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 4, 1, 10, 7, tz="UTC"))
    assert (info.start, info.end) == (datetime(2026, 4, 1, 10, 0, tzinfo=UTC), datetime(2026, 4, 1, 10, 5, tzinfo=UTC))
    assert sync_world.dag("inhance", "payments", flows=["balances"]) is None
    assert "PayPal" in sync_world.dag("inhance", "payments").doc_md


def test_no_sync_dags_without_a_cis_service(tmp_path):
    from icbridge.config.biller import BillerConfig

    logis = BillerConfig.model_validate({"biller_id": "t_logis", "bid": "9", "name": "L", "cis": "logis",
                                         "ic_conn_id": "t_ic"})
    aus = BillerConfig.model_validate({"biller_id": "t_aus2", "bid": "9", "name": "A", "cis": "aus",
                                       "ic_conn_id": "t_ic"})
    for module in SYNC_BUILDERS.values():
        assert module.build(logis, tmp_path) is None and module.build(aus, tmp_path) is None


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_dag_never_takes_a_row_left_sending_by_an_execution_of_the_same_try(sync_world, cis, dag_env):
    """Issue 22 item 1: Airflow may execute one task try twice (a duplicate start). The first
    execution crashed mid-call and left the payment 'sending' under the token the old code gave
    every execution of that try (``<run_id>#try<n>``); the second execution of the same try must
    find it in doubt, not take it back and post it again."""
    start = next(_dates)
    dag = sync_world.dag(cis, "payments")
    first = sync_world.run(dag, start, run_after=start + timedelta(hours=1))  # nothing to pay yet: learn the ids
    assert str(first.state) == "success", task_states(first)
    ti = _result(first, "payments")
    guid = sync_world.ic.add_payment(sync_world.guid, "1001", "7001", "25.00", start + timedelta(minutes=3))
    ledger = PaymentLedger(dag_env.state_url)
    try:
        assert ledger.claim(f"t_{cis}", guid, account_number="1001", cis_account="1001", invoice_number="7001",
                            amount=Decimal("25.00"), convenience_fee=Decimal("0.00"), payment_type="Credit Card",
                            payment_date=start + timedelta(minutes=3), cis=cis,
                            run_id=f"{first.run_id}#try{ti.try_number}")
    finally:
        ledger.dispose()
    again = sync_world.run(dag, start, run_after=start + timedelta(hours=1))  # the same run id, a new execution
    assert again.run_id == first.run_id and _result(again, "payments").try_number == ti.try_number
    assert str(again.state) == "failed", task_states(again)
    assert sync_world.sims[cis].payments(f"t_{cis}") == []  # not posted again
    assert [(r.payment_guid, r.status) for r in sync_world.ledger_rows(cis)] == [(guid, "in_doubt")]
