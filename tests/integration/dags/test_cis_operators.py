"""The CIS and Invoice Cloud operators run by Airflow (dag.test()) against the inHance, AUS and IC
simulators over real HTTP: success judgement, retries per fault kind (reads retried, payments
never), outcome unknown, the batch bound, masking in the task logs, and bill images.

A few tests call ``operator.execute(context)`` to assert the exact exception a task raises.
Keys are generated per test; connections are AIRFLOW_CONN_* env vars.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk import DAG, task

from icbridge.operators import cis as ops
from icbridge.operators import invoice_cloud as ic_ops
from icbridge.operators.cis_base import CisOutcomeUnknown, CisRefused, CisUnavailable
from icbsim.aus import AusSimulator
from icbsim.cis import make_pdf
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer

pytestmark = pytest.mark.usefixtures("airflow_db")

BILLER = "t1"
INH_ACCOUNTS = [f"4001{n:04d}" for n in range(1, 13)]  # 8 digits: masked as ****0001
AUS_ACCOUNT = "77001234"
EMAIL = "jane.roe@example.org"
WHEN = datetime(2026, 11, 25, 9, 30)
_dag_ids = itertools.count(1)
_dates = (datetime(2026, 3, 1, tzinfo=UTC).replace(minute=m % 60, hour=m // 60 % 24) for m in itertools.count())
SEEN: dict[str, Any] = {}


class _Ti:
    """The bit of a task instance a batch uses when it fails (xcom_push of its summary)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _register(dag: DAG) -> None:
    """dag.test() needs the DAG serialized in the metadata DB; ours live in the test, not dags/."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


class World:
    def __init__(self, tmp_path: Path, set_conn: Callable[..., str], ic_sim: Any) -> None:
        self.tmp = tmp_path
        self.server = SoapServer().start()
        self.inhance = InhanceSimulator(tmp_path / "inhance.sqlite", self.server)
        self.aus = AusSimulator(tmp_path / "aus.sqlite", self.server)
        self.ic = ic_sim
        keys = {name: secrets.token_urlsafe(16) for name in ("inh", "pay", "aus")}
        inh_url = self.inhance.add_biller(BILLER, keys["inh"])
        pay_url = self.inhance.add_endpoint(BILLER, "payments", keys["pay"])
        aus_url = self.aus.add_biller(BILLER, keys["aus"])
        set_conn("t_inh_cis", conn_type="inhance", host=inh_url, password=keys["inh"], extra={"timeout": 1.5})
        set_conn("t_inh_pay", conn_type="inhance", host=pay_url, password=keys["pay"])
        set_conn("t_aus_cis", conn_type="aus_cis", host=aus_url, password=keys["aus"], extra={"timeout": 1.5})
        set_conn("t_ic", **ic_sim.conn_fields(timeout=5))
        for n, account in enumerate(INH_ACCOUNTS):
            self.inhance.add_account(BILLER, account, balance=f"{100 + n}.25", future_balance=f"{125 + n}.25",
                                     email=EMAIL, phone="5550100")
        self.aus.add_account(BILLER, AUS_ACCOUNT, balance="80.00", past_due="12.00", email=EMAIL, cash_only=True,
                             customer_number="C9", location_number="L3")
        self.aus.add_bill(BILLER, AUS_ACCOUNT, "B-2026-11")
        self.billers = tmp_path / "billers"
        self.billers.mkdir()
        common = {"ic_conn_id": "t_ic", "retries": 2, "timezone": "UTC"}
        self._biller("t_inh", "inhance", {
            "conn_id": "t_inh_cis", "method_conn_ids": {"MakePaymentExtended": "t_inh_pay"},
            "paypal_payment_type": "Credit/Debit Card", "calls_in_flight": 3, "calls_per_second": 1000,
            "timeout_seconds": 1.5,
        }, common)
        self._biller("t_aus", "aus", {"conn_id": "t_aus_cis", "calls_in_flight": 2, "timeout_seconds": 1.5}, common)

    def _biller(self, biller_id: str, cis: str, section: dict, common: dict) -> None:
        config = {"biller_id": biller_id, "bid": "901", "name": biller_id, "cis": cis, **common, "cis_service": section}
        (self.billers / f"{biller_id}.yaml").write_text(yaml.safe_dump(config))

    def biller(self, biller_id: str) -> dict[str, str]:
        return {"biller_id": biller_id, "billers_dir": str(self.billers)}

    def run(self, build: Callable[[], list[Any]]) -> tuple[dict[str, str], dict[str, Any]]:
        """Build the operators in a fresh DAG, run it with dag.test(); (task states, XComs by task)."""
        SEEN.clear()
        with DAG(f"t_cis_ops_{next(_dag_ids)}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
            operators = build()
            task_ids = [op.task_id for op in operators]

            @task(trigger_rule="all_done")
            def collect(**context: Any) -> None:
                for task_id in task_ids:
                    SEEN[task_id] = context["ti"].xcom_pull(task_ids=task_id)
                    SEEN[f"{task_id}.summary"] = context["ti"].xcom_pull(task_ids=task_id, key="summary")

            operators >> collect()
        _register(dag)
        run = dag.test(logical_date=next(_dates))
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        self.tries = {ti.task_id: ti.try_number for ti in run.get_task_instances()}
        return states, dict(SEEN)

    def stop(self) -> None:
        self.server.stop()
        self.inhance.stop()
        self.aus.stop()


@pytest.fixture
def world(tmp_path: Path, set_airflow_conn, ic_sim, monkeypatch) -> Iterator[World]:
    empty = tmp_path / "no-billers"
    empty.mkdir()
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(empty))  # dag.test re-parses dags/: keep it quick
    monkeypatch.setenv("ICBRIDGE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    w = World(tmp_path, set_airflow_conn, ic_sim)
    try:
        yield w
    finally:
        w.stop()


def _context() -> dict[str, Any]:
    return {"run_id": "manual__2026-11-25T09:30:00+00:00", "ti": _Ti()}


def _payment(**kw: Any) -> dict[str, Any]:
    return {"account_number": INH_ACCOUNTS[0], "payment_date": WHEN.isoformat(), "payment_amount": "25.10",
            "payment_type": "CreditCard", "payment_reference": "PG-1", **kw}


# every operator once, against its simulator --------------------------------------------------


def test_inhance_operators_each_call_their_method(world: World) -> None:
    b = world.biller("t_inh")
    states, xcoms = world.run(lambda: [
        ops.InhanceBalanceCheckOperator(task_id="rtdr", account_number=INH_ACCOUNTS[0], last_invoice_number="1", **b),
        ops.InhanceSetPaperlessOperator(task_id="paperless", account_number=INH_ACCOUNTS[1], paperless="true", **b),
        ops.InhanceSetAutopayOperator(task_id="autopay", account_number=INH_ACCOUNTS[1], autopay=True, **b),
        ops.InhanceSetEmailOperator(task_id="email", account_number=INH_ACCOUNTS[2], new_email="n.ew@example.org", **b),
    ])
    assert set(states.values()) == {"success"}, states
    rtdr = xcoms["rtdr"]
    assert (rtdr["status"], rtdr["balance"], rtdr["future_balance"], rtdr["email"]) == ("ok", "100.25", "125.25", EMAIL)
    changes = {(c["account_number"], c["field"], c["value"]) for c in world.inhance.changes(BILLER)}
    assert changes == {
        (INH_ACCOUNTS[1], "paperless", True), (INH_ACCOUNTS[1], "autopay", True),
        (INH_ACCOUNTS[2], "email", "n.ew@example.org"),
    }


def test_inhance_payment_drops_conveyance_suffix_and_maps_paypal_to_the_biller_setting(world: World) -> None:
    conveyed = f"{INH_ACCOUNTS[3]}-CV-202603081530"
    states, xcoms = world.run(lambda: [
        ops.InhanceMakePaymentExtendedOperator(
            task_id="pay", **world.biller("t_inh"),
            **_payment(account_number=conveyed, payment_type="PayPal", document_number="D7", convenience_fee="1.95"),
        ),
    ])
    assert states["pay"] == "success" and world.tries["pay"] == 1
    [paid] = world.inhance.payments(BILLER)
    assert (paid["account_number"], paid["payment_type"], paid["amount"], paid["convenience_fee"]) == (
        INH_ACCOUNTS[3], "Credit/Debit Card", Decimal("25.10"), Decimal("1.95"),
    )
    assert paid["endpoint"].endswith("/payments/iCloud.asmx")  # rule 6: its own endpoint and key
    assert (xcoms["pay"]["ic_account_number"], xcoms["pay"]["ic_payment_type"]) == (conveyed, "PayPal")


def test_payment_operator_default_paypal_type_and_no_airflow_retries() -> None:
    op = ops.InhanceMakePaymentExtendedOperator(task_id="p", conn_id="x", retries=5, **_payment(payment_type="paypal"))
    assert op.retries == 0 and op.attempts == 1
    assert op.normalize(dict(_payment(payment_type="paypal")))["payment_type"] == "Credit Card"
    read = ops.InhanceBalanceCheckOperator(task_id="r", account_number="1", last_invoice_number=1, retries=4)
    assert (read.retries, read.attempts) == (4, 3)


def test_aus_operators_each_call_their_method(world: World) -> None:
    b = world.biller("t_aus")
    states, xcoms = world.run(lambda: [
        ops.AusGetAccountDataOperator(task_id="rtdr", account_number=AUS_ACCOUNT, **b),
        ops.AusAddPendingPaymentOperator(task_id="pay", **b, **_payment(account_number=AUS_ACCOUNT,
                                                                         payment_type="PayPal")),
        ops.AusUpdatePaymentPlanOperator(task_id="autopay", account_number=AUS_ACCOUNT, autopay_enrolled="yes", **b),
        ops.AusUpdateEBillRegistrationOperator(task_id="ebill", account_number=AUS_ACCOUNT, ebill_enrolled=True,
                                                email_address="n.ew@example.org", **b),
        ops.AusRetrieveBillPrintImageOperator(task_id="bill", account_number=AUS_ACCOUNT, bill_number="B-2026-11", **b),
    ])
    assert set(states.values()) == {"success"}, states
    assert (xcoms["rtdr"]["balance"], xcoms["rtdr"]["past_due"], xcoms["rtdr"]["cash_only"]) == ("80.00", "12.00", True)
    [paid] = world.aus.payments(BILLER)
    assert (paid["payment_type"], paid["amount"]) == ("Credit Card", Decimal("25.10"))
    assert xcoms["pay"]["pending_payment_id"]
    account = world.aus.account(BILLER, AUS_ACCOUNT)
    assert (account["autopay"], account["paperless"], account["email"]) == (True, True, "n.ew@example.org")
    stored = Path(xcoms["bill"]["path"])
    assert stored.name == f"{AUS_ACCOUNT}_B-2026-11.pdf" and stored.parent.name == "bills"
    assert stored.read_bytes().startswith(b"%PDF-") and xcoms["bill"]["bytes"] == stored.stat().st_size
    assert not list(stored.parent.glob("*.part"))


def test_invoice_cloud_operators_each_call_their_method(world: World) -> None:
    guid = world.ic.biller_guid
    sim = world.ic.sim
    sim.add_invoice(guid, "A100", "9001", "50.00")
    sim.add_invoice(guid, "A200", "9002", "70.00")
    sim.add_customer(guid, "A100", email_address=EMAIL, phone="5550100")
    pay_guid = sim.add_payment(guid, "A100", "9001", "20.00", datetime(2026, 11, 24, 10, 0), payment_type="PayPal")
    sim.add_change(guid, "A100", "Paperless", "true", datetime(2026, 11, 24, 11, 0))
    window = {"from_date": "2026-11-24T00:00:00", "to_date": "2026-11-25T00:00:00"}
    b = world.biller("t_inh")  # IC operators take the biller's ic_conn_id
    states, xcoms = world.run(lambda: [
        ic_ops.InvoiceCloudListPaymentsOperator(task_id="payments", **window, **b),
        ic_ops.InvoiceCloudListChangeLogOperator(task_id="changes", **window, **b),
        ic_ops.InvoiceCloudListOpenInvoicesOperator(task_id="open", all_pages=True, page_size=1, **b),
        ic_ops.InvoiceCloudUpdateInvoiceBalanceOperator(task_id="balance", account_number="A200",
                                                       invoice_number="9002", balance_due="12.34", **b),
        ic_ops.InvoiceCloudUpdateCustomerRecordOperator(task_id="customer", account_number="A100", paperless="true",
                                                       phone="5550199", **b),
        ic_ops.InvoiceCloudViewCustomerRecordOperator(task_id="view", account_number="A100", conn_id="t_ic"),
    ])
    assert set(states.values()) == {"success"}, states
    assert [(p["payment_guid"], p["payment_type"]) for p in xcoms["payments"]["items"]] == [(pay_guid, "PayPal")]
    assert [(c["change_type"], c["new_value"]) for c in xcoms["changes"]["items"]] == [("Paperless", "true")]
    assert sorted(i["invoice_number"] for i in xcoms["open"]["items"]) == ["9001", "9002"]
    assert {i["invoice_number"]: Decimal(str(i["balance_due"])) for i in sim.invoices(guid)}["9002"] == Decimal("12.34")
    [customer] = [c for c in sim.customers(guid) if c["account_number"] == "A100"]
    assert (bool(customer["paperless"]), customer["phone"]) == (True, "5550199")
    assert xcoms["view"]["record"]["email_address"] == EMAIL


def test_payments_listed_in_ic_feed_a_payment_batch_through_xcom(world: World) -> None:
    guid = world.ic.biller_guid
    for n, account in enumerate(INH_ACCOUNTS[:3]):
        world.ic.sim.add_payment(guid, account, f"90{n}", f"1{n}.00", datetime(2026, 11, 24, 10, n))
    b = world.biller("t_inh")

    def build() -> list[Any]:
        listed = ic_ops.InvoiceCloudListPaymentsOperator(
            task_id="list", from_date="2026-11-24", to_date="2026-11-25", **b
        )
        pay = ops.InhanceMakePaymentExtendedOperator(task_id="pay", items=listed.output, **b)
        listed >> pay
        return [listed, pay]

    states, xcoms = world.run(build)
    assert states["pay"] == "success", states
    assert xcoms["pay"]["counts"]["ok"] == 3 and xcoms["pay"]["failed"] == []
    assert sorted(p["account_number"] for p in world.inhance.payments(BILLER)) == INH_ACCOUNTS[:3]
    # the IC PaymentGUID is the payment reference
    assert {p["reference"] for p in world.inhance.payments(BILLER)} == {
        p["payment_guid"] for p in xcoms["list"]["items"]
    }


# faults through the base ----------------------------------------------------------------------


def test_latency_within_the_timeout_is_just_slow(world: World) -> None:
    world.aus.faults.set("GetAccountData", kind="latency", seconds=0.3)
    states, xcoms = world.run(lambda: [
        ops.AusGetAccountDataOperator(task_id="rtdr", account_number=AUS_ACCOUNT, **world.biller("t_aus")),
    ])
    assert states["rtdr"] == "success" and xcoms["rtdr"]["attempts"] == 1


def test_business_failure_fails_the_task_or_is_recorded_when_asked(world: World) -> None:
    world.inhance.faults.set("BalanceCheck", kind="business", message="CIS busy")
    b = world.biller("t_inh")
    states, xcoms = world.run(lambda: [
        ops.InhanceBalanceCheckOperator(task_id="strict", account_number=INH_ACCOUNTS[0], last_invoice_number=1, **b),
        ops.InhanceBalanceCheckOperator(task_id="lenient", account_number=INH_ACCOUNTS[0], last_invoice_number=1,
                                        fail_on_business_error=False, **b),
    ])
    assert (states["strict"], states["lenient"]) == ("failed", "success")
    assert (xcoms["lenient"]["status"], xcoms["lenient"]["message"]) == ("refused", "CIS busy")
    with pytest.raises(CisRefused, match=r"BalanceCheck for account \*+0001: refused: CIS busy"):
        ops.InhanceBalanceCheckOperator(
            task_id="x", account_number=INH_ACCOUNTS[0], last_invoice_number=1, **b
        ).execute(_context())


def test_unknown_account_is_not_found(world: World) -> None:
    op = ops.AusGetAccountDataOperator(task_id="x", account_number="99999999", fail_on_business_error=False,
                                       **world.biller("t_aus"))
    assert op.execute(_context())["status"] == "not_found"


@pytest.mark.parametrize("kind", ["http500", "fault", "drop"])
def test_read_and_setter_retry_a_transport_fault_and_succeed(world: World, kind: str) -> None:
    world.inhance.faults.set("BalanceCheck", kind=kind, times=1)
    world.aus.faults.set("UpdatePaymentPlan", kind=kind, times=1)
    states, xcoms = world.run(lambda: [
        ops.InhanceBalanceCheckOperator(task_id="rtdr", account_number=INH_ACCOUNTS[0], last_invoice_number=1,
                                        backoff_seconds=0.05, **world.biller("t_inh")),
        ops.AusUpdatePaymentPlanOperator(task_id="autopay", account_number=AUS_ACCOUNT, autopay_enrolled=True,
                                         backoff_seconds=0.05, **world.biller("t_aus")),
    ])
    assert (states["rtdr"], states["autopay"]) == ("success", "success"), states
    assert (xcoms["rtdr"]["attempts"], xcoms["autopay"]["attempts"]) == (2, 2)
    assert world.inhance.faults.fired == [("BalanceCheck", kind)] and world.aus.faults.fired == [
        ("UpdatePaymentPlan", kind)
    ]
    assert len(world.inhance.received(BILLER, "BalanceCheck")) == 1  # the faulted try never reached the handler


def test_read_gives_up_after_its_attempts(world: World) -> None:
    world.aus.faults.set("GetAccountData", kind="http500")
    op = ops.AusGetAccountDataOperator(task_id="x", account_number=AUS_ACCOUNT, attempts=2, backoff_seconds=0.01,
                                       **world.biller("t_aus"))
    with pytest.raises(CisUnavailable, match=r"GetAccountData for account \*+1234 failed after 2 tries"):
        op.execute(_context())
    assert len(world.aus.faults.fired) == 2


def test_payment_soap_fault_is_a_refusal_never_resent(world: World) -> None:
    """A SOAP fault is the CIS's answer: refused (issue 11), one call, nothing re-sent."""
    op = ops.AusAddPendingPaymentOperator(task_id="x", **world.biller("t_aus"), **_payment(account_number=AUS_ACCOUNT))
    world.aus.faults.set("AddPendingPayment", kind="fault", times=1)
    with pytest.raises(CisRefused, match=r"AddPendingPayment for account \*+1234: refused: SOAP fault"):
        op.execute(_context())
    assert world.aus.faults.fired == [("AddPendingPayment", "fault")] and world.aus.payments(BILLER) == []


@pytest.mark.parametrize("kind", ["http500", "drop"])
def test_payment_fault_is_outcome_unknown_and_never_resent(world: World, kind: str) -> None:
    world.inhance.faults.set("MakePaymentExtended", kind=kind, times=1)
    states, _ = world.run(lambda: [
        ops.InhanceMakePaymentExtendedOperator(task_id="pay", **world.biller("t_inh"), **_payment()),
    ])
    assert states["pay"] == "failed" and world.tries["pay"] == 1  # biller retries=2, payment task retries=0
    assert world.inhance.faults.fired == [("MakePaymentExtended", kind)]  # exactly one call received
    assert world.inhance.payments(BILLER) == []  # the one call was the faulted one: nothing re-sent
    op = ops.AusAddPendingPaymentOperator(task_id="x", **world.biller("t_aus"), **_payment(account_number=AUS_ACCOUNT))
    world.aus.faults.set("AddPendingPayment", kind=kind, times=1)
    with pytest.raises(CisOutcomeUnknown, match=r"AddPendingPayment for account \*+1234: OUTCOME UNKNOWN"):
        op.execute(_context())
    assert world.aus.faults.fired == [("AddPendingPayment", kind)] and world.aus.payments(BILLER) == []


def test_late_answer_on_a_payment_is_outcome_unknown_and_the_cis_has_it_once(world: World) -> None:
    world.inhance.faults.set("MakePaymentExtended", kind="late", seconds=3, times=1)
    op = ops.InhanceMakePaymentExtendedOperator(task_id="x", **world.biller("t_inh"), **_payment())
    with pytest.raises(CisOutcomeUnknown, match="AnswerTimeout"):
        op.execute(_context())
    time.sleep(1.8)  # let the late answer finish on the server side
    assert len(world.inhance.payments(BILLER)) == 1
    assert len(world.inhance.received(BILLER, "MakePaymentExtended")) == 1


def test_payment_refused_by_the_cis_is_a_known_outcome(world: World) -> None:
    op = ops.InhanceMakePaymentExtendedOperator(task_id="x", **world.biller("t_inh"),
                                                **_payment(account_number="99999999"))
    with pytest.raises(CisRefused, match=r"\*+9999: not_found: Account not found"):
        op.execute(_context())


# batches -------------------------------------------------------------------------------------


def test_batch_never_has_more_calls_in_flight_than_the_biller_allows(world: World) -> None:
    world.inhance.faults.set("BalanceCheck", kind="latency", seconds=0.4)
    items = [{"account_number": a, "last_invoice_number": 1} for a in INH_ACCOUNTS[:9]]
    op = ops.InhanceBalanceCheckOperator(task_id="x", items=items, **world.biller("t_inh"))  # in flight: 3
    began = time.monotonic()
    summary = op.execute(_context())
    elapsed = time.monotonic() - began
    assert summary["counts"]["ok"] == 9 and summary["total"] == 9
    # 9 calls of >= 0.4 s, at most 3 at once: at least 3 waves. More in flight would finish sooner.
    assert elapsed >= 3 * 0.4 - 0.05
    stamps = sorted(r["received_at"] for r in world.inhance.received(BILLER, "BalanceCheck"))
    assert (stamps[-1] - stamps[0]).total_seconds() >= 2 * 0.4 - 0.05


def test_batch_counts_outcomes_and_reports_failed_items(world: World) -> None:
    world.aus.faults.set("UpdatePaymentPlan", kind="business", times=1, message="locked")
    items = [AUS_ACCOUNT, "99999999", {"account_number": AUS_ACCOUNT, "autopay_enrolled": "maybe"}]
    states, xcoms = world.run(lambda: [
        ops.AusUpdatePaymentPlanOperator(task_id="batch", items=items, autopay_enrolled=True,
                                              **world.biller("t_aus")),
    ])
    assert states["batch"] == "success"
    counts = xcoms["batch"]["counts"]
    assert (counts["refused"] + counts["ok"], counts["not_found"], counts["invalid"]) == (1, 1, 1)
    assert {f["status"] for f in xcoms["batch"]["failed"]} >= {"not_found", "invalid"}
    assert {f["account_number"] for f in xcoms["batch"]["failed"]} == {AUS_ACCOUNT, "99999999"}  # whole in XCom


def test_payment_batch_with_a_late_answer_fails_as_outcome_unknown_after_the_rest(world: World) -> None:
    world.inhance.faults.set("MakePaymentExtended", kind="late", seconds=3, times=1)
    items = [_payment(account_number=a, payment_reference=f"R{a}") for a in INH_ACCOUNTS[:4]]
    op = ops.InhanceMakePaymentExtendedOperator(task_id="x", items=items, **world.biller("t_inh"))
    context = _context()
    with pytest.raises(CisOutcomeUnknown, match="1 call"):
        op.execute(context)
    summary = context["ti"].pushed["summary"]
    assert (summary["counts"]["ok"], summary["counts"]["unknown"]) == (3, 1)
    time.sleep(1.8)
    assert sorted(p["account_number"] for p in world.inhance.payments(BILLER)) == INH_ACCOUNTS[:4]  # each once


# masking ---------------------------------------------------------------------------------------


def test_logs_never_show_a_whole_account_number_or_email(world: World, capfd) -> None:
    world.inhance.faults.set("SetEmail", kind="business", message=f"{EMAIL} rejected for {INH_ACCOUNTS[5]}")
    b = world.biller("t_inh")
    states, _ = world.run(lambda: [
        ops.InhanceSetEmailOperator(task_id="email", account_number=INH_ACCOUNTS[5], new_email=EMAIL, **b),
        ops.InhanceBalanceCheckOperator(
            task_id="batch", items=[{"account_number": a, "last_invoice_number": "x"} for a in INH_ACCOUNTS[6:8]], **b
        ),
        ops.InhanceMakePaymentExtendedOperator(task_id="pay", **b, **_payment(
            account_number=f"{INH_ACCOUNTS[8]}-CV-202603081530")),
    ])
    assert states["email"] == "failed" and states["batch"] == "success" and states["pay"] == "success"
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "****0006" in logs and "j***@example.org" in logs  # the lines are there, masked
    assert "MakePaymentExtended for account ****0009: ok" in logs  # the CIS account (rule 4), masked
    for secret in (EMAIL, *INH_ACCOUNTS[5:9]):
        assert secret not in logs


# bill images -----------------------------------------------------------------------------------


def test_non_pdf_bill_is_rejected_and_nothing_written(world: World, tmp_path: Path) -> None:
    world.aus.faults.set("RetrieveBillPrintImageV2", kind="non_pdf")
    dest = tmp_path / "bills-out"
    op = ops.AusRetrieveBillPrintImageOperator(task_id="x", account_number=AUS_ACCOUNT, bill_number="B-2026-11",
                                               destination=str(dest), **world.biller("t_aus"))
    with pytest.raises(CisRefused, match=r"bill B-2026-11 of account \*+1234: .*not a PDF") as error:
        op.execute(_context())
    assert AUS_ACCOUNT not in str(error.value)
    assert not dest.exists() or not any(dest.iterdir())


def test_truncated_pdf_is_rejected(world: World, tmp_path: Path) -> None:
    world.aus.add_bill(BILLER, AUS_ACCOUNT, "B-TRUNC", make_pdf("bill")[:200])
    op = ops.AusRetrieveBillPrintImageOperator(task_id="x", account_number=AUS_ACCOUNT, bill_number="B-TRUNC",
                                               destination=str(tmp_path / "out"), **world.biller("t_aus"))
    with pytest.raises(CisRefused, match="not a PDF"):
        op.execute(_context())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bill_batch_stores_each_pdf_and_counts_a_missing_bill(world: World, tmp_path: Path) -> None:
    world.aus.add_bill(BILLER, AUS_ACCOUNT, "B-2026-10")
    items = [{"account_number": AUS_ACCOUNT, "bill_number": n} for n in ("B-2026-10", "B-2026-11", "B-NONE")]
    op = ops.AusRetrieveBillPrintImageOperator(task_id="x", items=items, destination=str(tmp_path / "b"),
                                                    **world.biller("t_aus"))
    summary = op.execute(_context())
    assert (summary["counts"]["ok"], summary["counts"]["not_found"]) == (2, 1)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        f"{AUS_ACCOUNT}_B-2026-10.pdf", f"{AUS_ACCOUNT}_B-2026-11.pdf"
    ]
