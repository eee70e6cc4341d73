"""`<biller>__balance_all` run by Airflow (dag.test()) against the IC simulator and the inHance /
AUS simulators over real HTTP: every outcome, corrections with before/after, the dry run, and
the error threshold failing the run after its report is stored."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from icbridge.state.reconcile import FAILED_THRESHOLD, SUCCEEDED, ReconcileStore
from icbsim.aus import AusSimulator
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer

pytestmark = pytest.mark.usefixtures("airflow_db")
D = Decimal
_dates = iter(datetime(2026, 6, 7, 10, tzinfo=UTC) + timedelta(days=7 * n) for n in range(1000))


@pytest.fixture
def cis_server():
    server = SoapServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(tmp_path, ic_sim, cis_server, set_airflow_conn, dag_env, request):
    """One biller (param: inhance or aus) with IC, its CIS simulator, connections, state DB."""
    cis = request.param
    key = secrets.token_urlsafe(16)
    if cis == "inhance":
        sim = InhanceSimulator(tmp_path / "cis.sqlite", cis_server)
        conn_type = "inhance"
    else:
        sim = AusSimulator(tmp_path / "cis.sqlite", cis_server)
        conn_type = "aus_cis"
    url = sim.add_biller("t", key)
    set_airflow_conn("t_cis", conn_type=conn_type, host=url, password=key, extra={"timeout": 5})
    set_airflow_conn("t_ic", **ic_sim.conn_fields())
    billers, state_url = dag_env.billers, dag_env.state_url

    class World:
        def __init__(self) -> None:
            self.cis = cis
            self.sim = sim
            self.guid = ic_sim.biller_guid
            self.ic = ic_sim.sim
            self.store = ReconcileStore(state_url)

        def configure(self, **balance_all) -> None:
            cis_service = {"conn_id": "t_cis", "calls_in_flight": 4, "calls_per_second": 200, "timeout_seconds": 5}
            if cis == "inhance":
                cis_service["rtdr_version"] = 2
            config = {
                "biller_id": "t_bill", "bid": ic_sim.bid, "name": "Test Utility", "cis": cis, "ic_conn_id": "t_ic",
                "retries": 0, "timezone": "America/Chicago", "cis_service": cis_service,
                "balance_all": {"attempts": 2, "backoff_seconds": 0, "page_size": 2, **balance_all},
            }
            (billers / "t_bill.yaml").write_text(yaml.safe_dump(config))
            from icbridge.config.biller import load_biller
            from icbridge.dagbuild import balance_all as builder

            self.dag = builder.build(load_biller(billers / "t_bill.yaml"), billers)

        def invoice(self, account, number, balance, total=None, *, cc=False, eft=False):
            self.ic.add_invoice(self.guid, account, number, total or balance, balance)
            self.ic.add_customer(self.guid, account, block_payments_cc=cc, block_payments_eft=eft)

        def run(self, dry_run: bool = False):
            # conf always given: dag.test() keeps the previous run's conf in the DAG's params
            return self.dag.test(logical_date=next(_dates), run_conf={"dry_run": dry_run})

        def ic_invoices(self):
            return {i["account_number"]: i for i in self.ic.invoices(self.guid)}

        def ic_customers(self):
            return {c["account_number"]: c for c in self.ic.customers(self.guid)}

        def items(self, run):
            return {i["account_number"]: i for i in self.store.items(run.id, limit=1000)}

    w = World()
    try:
        yield w
    finally:
        w.store.dispose()
        sim.stop()


def _inhance_accounts(w):
    w.invoice("1001", "5001", "100.00", "120.00")
    w.sim.add_account("t", "1001", balance="100.00", future_balance="120.00")
    w.invoice("1002", "5002", "50.00")  # IC shows more than the CIS
    w.sim.add_account("t", "1002", balance="45.50", future_balance="50.00")
    w.invoice("1003", "5003", "30.00", "30.00")  # version 2: only TotalAmountDue vs FutureBalance differs
    w.sim.add_account("t", "1003", balance="30.00", future_balance="40.00")
    w.invoice("1004", "5004", "12.00")  # the CIS does not know it
    w.invoice("1005", "INV-X", "9.00")  # inHance takes an integer LastInvoiceNumber: cis_error
    w.sim.add_account("t", "1005", balance="9.00")


@pytest.mark.parametrize("world", ["inhance"], indirect=True)
def test_inhance_every_outcome_dry_run_then_corrections(world):
    world.configure(corrections_allowed=True, error_threshold_pct=25)
    _inhance_accounts(world)

    dry = world.run(dry_run=True)
    assert str(dry.state) == "success"
    [dry_report] = world.store.runs("t_bill")
    assert dry_report.dry_run and dry_report.status == SUCCEEDED and dry_report.corrections_made == 0
    assert world.ic_invoices()["1002"]["balance_due"] == D("50.00")  # nothing changed
    assert world.items(dry_report)["1002"]["after"] == {"BalanceDue": "45.50", "TotalAmountDue": "50.00"}

    run = world.run()
    assert str(run.state) == "success"
    report = world.store.runs("t_bill")[0]
    assert not report.dry_run and report.accounts_checked == 5
    assert report.counts == {"match": 1, "balance_mismatch": 1, "total_mismatch": 1, "flags_mismatch": 0,
                             "missing_in_cis": 1, "cis_error": 1}
    assert report.corrections_made == 2 and report.mismatches == 2
    # 1002's balance differs by 4.50; 1003's total due alone by -10.00: both count (issue 24)
    assert report.sum_abs_difference == D("14.50") and report.net_difference == D("-5.50")
    assert report.week == "2026-W24"  # the logical date's ISO week in America/Chicago
    items = world.items(report)
    assert items["1002"]["before"] == {"BalanceDue": "50.00", "TotalAmountDue": "50.00"}
    assert items["1002"]["corrected"] is True
    assert items["1003"]["outcome"] == "total_mismatch" and items["1003"]["total_difference"] == D("-10.00")
    assert items["1003"]["corrected"] is True
    assert items["1004"]["outcome"] == "missing_in_cis" and "not found" in items["1004"]["message"].lower()
    assert items["1005"]["outcome"] == "cis_error" and "LastInvoiceNumber" in items["1005"]["message"]
    ic = world.ic_invoices()
    assert (ic["1002"]["balance_due"], ic["1002"]["total_amount_due"]) == (D("45.50"), D("50.00"))
    assert (ic["1003"]["balance_due"], ic["1003"]["total_amount_due"]) == (D("30.00"), D("40.00"))
    assert ic["1004"]["balance_due"] == D("12.00")  # missing in CIS: never touched
    calls = world.sim.received("t", "BalanceCheck")
    assert {c["account_number"] for c in calls} == {"1001", "1002", "1003", "1004"}  # 1005 never sent

    again = world.run()
    assert str(again.state) == "success"
    assert world.store.runs("t_bill")[0].counts["balance_mismatch"] == 0


@pytest.mark.parametrize("world", ["inhance"], indirect=True)
def test_threshold_fails_the_run_and_keeps_the_report(world):
    world.configure(corrections_allowed=True)  # default threshold 2 %
    _inhance_accounts(world)
    world.sim.faults.set("BalanceCheck", kind="http500")  # the CIS is down
    run = world.run()
    assert str(run.state) == "failed"
    [report] = world.store.runs("t_bill")
    assert report.status == FAILED_THRESHOLD and report.accounts_checked == 5
    assert report.counts["cis_error"] == 5 and "above the threshold of 2 %" in report.message
    items = world.items(report)
    assert "HTTP 500" in items["1001"]["message"] and "after 2 attempts" in items["1001"]["message"]
    assert [kind for _, kind in world.sim.faults.fired].count("http500") == 8  # 4 sent (1005 never) x 2 attempts
    assert world.ic_invoices()["1002"]["balance_due"] == D("50.00")


@pytest.mark.parametrize("world", ["aus"], indirect=True)
def test_aus_cash_only_flags_balances_and_missing(world):
    world.configure(corrections_allowed=True)
    world.invoice("2001", "7001", "10.00")
    world.sim.add_account("t", "2001", balance="10.00", cash_only=False)
    world.invoice("2002", "7002", "20.00", cc=True, eft=False)  # rule 7: CashOnly means both blocks
    world.sim.add_account("t", "2002", balance="20.00", cash_only=True)
    world.invoice("2003", "7003", "33.00", cc=True, eft=True)
    world.sim.add_account("t", "2003", balance="30.00", cash_only=False)  # balance and flags differ
    world.invoice("2004", "7004", "5.00")
    run = world.run()
    assert str(run.state) == "success"
    [report] = world.store.runs("t_bill")
    assert report.counts == {"match": 1, "balance_mismatch": 1, "total_mismatch": 0, "flags_mismatch": 1,
                             "missing_in_cis": 1, "cis_error": 0}
    items = world.items(report)
    assert items["2002"]["after"] == {"BlockPaymentsCC": True, "BlockPaymentsEFT": True}
    assert items["2003"]["before"] == {"BalanceDue": "33.00", "BlockPaymentsCC": True, "BlockPaymentsEFT": True}
    customers = world.ic_customers()
    assert (customers["2002"]["block_payments_cc"], customers["2002"]["block_payments_eft"]) == (True, True)
    assert (customers["2003"]["block_payments_cc"], customers["2003"]["block_payments_eft"]) == (False, False)
    assert world.ic_invoices()["2003"]["balance_due"] == D("30.00")


@pytest.mark.parametrize("world", ["aus"], indirect=True)
def test_corrections_not_allowed_report_only(world):
    world.configure()  # corrections_allowed defaults to false
    world.invoice("2002", "7002", "20.00", cc=False, eft=False)
    world.sim.add_account("t", "2002", balance="25.00", cash_only=True)
    assert str(world.run().state) == "success"
    [report] = world.store.runs("t_bill")
    assert report.counts["balance_mismatch"] == 1 and report.corrections_made == 0
    assert world.ic_invoices()["2002"]["balance_due"] == D("20.00")
    assert world.ic_customers()["2002"]["block_payments_cc"] is False


def test_dag_only_for_billers_with_balance_all(tmp_path):
    from icbridge.config.biller import BillerConfigError, load_biller
    from icbridge.dagbuild import balance_all as builder

    path = tmp_path / "x_bill.yaml"
    base = {"biller_id": "x_bill", "bid": "1", "name": "X", "ic_conn_id": "c"}
    path.write_text(yaml.safe_dump({**base, "cis": "aus", "cis_service": {"conn_id": "k"}}))
    assert builder.build(load_biller(path), tmp_path) is None  # no balance_all section
    path.write_text(yaml.safe_dump({**base, "cis": "logis", "balance_all": {}}))
    with pytest.raises(BillerConfigError, match="balance_all: .*inHance or AUS"):
        load_biller(path)
    path.write_text(yaml.safe_dump({**base, "cis": "aus", "balance_all": {}}))
    with pytest.raises(BillerConfigError, match="add a cis_service section"):
        load_biller(path)
    path.write_text(yaml.safe_dump({**base, "cis": "aus", "cis_service": {"conn_id": "k"}, "balance_all": {}}))
    dag = builder.build(load_biller(path), tmp_path)
    assert dag.dag_id == "x_bill__balance_all" and "dry_run" in dag.params
    assert dag.schedule == "0 6 * * 0" and dag.timezone.name == "America/New_York"  # Sundays, biller's zone
