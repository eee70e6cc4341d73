"""Balance All core without Airflow: the comparison rules, the engine (concurrency bounds,
retries, bounded streaming), corrections against the real IC simulator over HTTP, and the
report in the state DB (SQLite and PostgreSQL) with the threshold judged after storing."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
import requests

from icbridge.flows.balance_all import ThresholdExceeded, iso_week, run_balance_all
from icbridge.reconcile.compare import CisAccount, IcAccount, IcFlags, Outcome, Rules, compare, plan_correction
from icbridge.reconcile.engine import (
    IcOrderError,
    IcUnavailable,
    Limits,
    LookupNotFound,
    LookupRefused,
    Reconciler,
    Settings,
    group_accounts,
    prefetch,
    with_retries,
)
from icbridge.reconcile.invoice_cloud import InvoiceCloudSide, ic_accounts
from icbridge.state.reconcile import FAILED, FAILED_THRESHOLD, SUCCEEDED, ReconcileStore
from tests.support.services import require_service

D = Decimal
FAST = Limits(max_in_flight=4, attempts=3, backoff_seconds=0.001, backoff_max_seconds=0.002)


def acct(number: str, balance: str, total: str | None = None, invoice: str = "1001") -> IcAccount:
    return IcAccount(number, invoice, D(balance), D(total if total is not None else balance))


# compare: the rules -----------------------------------------------------------------------------


def test_balance_compared_to_the_cent():
    rules = Rules()
    assert compare(acct("A1", "10.00"), CisAccount(D("10.004")), rules).outcome is Outcome.MATCH
    item = compare(acct("A1", "10.00"), CisAccount(D("10.005")), rules)  # half up: 10.01
    assert item.outcome is Outcome.BALANCE_MISMATCH
    assert item.difference == D("-0.01") and item.cis_balance == D("10.01")


def test_inhance_version_2_compares_total_amount_due_with_future_balance():
    ic = acct("A1", "50.00", total="80.00")
    v1, v2 = Rules(), Rules(future_balance=True)
    cis = CisAccount(D("50.00"), future_balance=D("75.00"))
    assert compare(ic, cis, v1).outcome is Outcome.MATCH  # without version 2 the future balance is not compared
    item = compare(ic, cis, v2)
    assert item.outcome is Outcome.TOTAL_MISMATCH and item.is_mismatch  # issue 24: a kind of its own
    assert item.difference == 0 and item.total_difference == D("5.00") and item.own_difference == D("5.00")
    both = compare(acct("A2", "51.00", total="80.00"), cis, v2)  # a balance difference wins
    assert both.outcome is Outcome.BALANCE_MISMATCH and both.own_difference == D("1.00")
    correction = plan_correction(item, v2)
    assert correction.balance_due == D("50.00") and correction.total_amount_due == D("75.00")
    assert compare(ic, CisAccount(D("50.00"), future_balance=D("80")), v2).outcome is Outcome.MATCH
    # a version 2 answer without FutureBalance is a CIS problem, not a difference
    assert compare(ic, CisAccount(D("50.00")), v2).outcome is Outcome.CIS_ERROR


@pytest.mark.parametrize(
    ("cc", "eft", "cash_only", "outcome"),
    [
        (True, True, True, Outcome.MATCH),
        (False, False, False, Outcome.MATCH),
        (True, False, True, Outcome.FLAGS_MISMATCH),  # rule 7: CashOnly means both blocks
        (False, True, False, Outcome.FLAGS_MISMATCH),
        (False, False, True, Outcome.FLAGS_MISMATCH),
    ],
)
def test_aus_cash_only_sets_both_payment_blocks(cc, eft, cash_only, outcome):
    rules = Rules(cash_only=True)
    item = compare(acct("A1", "5"), CisAccount(D("5"), cash_only=cash_only), rules, IcFlags(cc, eft))
    assert item.outcome is outcome
    correction = plan_correction(item, rules)
    if outcome is Outcome.FLAGS_MISMATCH:
        assert (correction.block_payments_cc, correction.block_payments_eft) == (cash_only, cash_only)
        assert correction.balance_due is None
    else:
        assert correction is None


def test_balance_wins_over_flags_and_both_are_corrected():
    rules = Rules(cash_only=True)
    item = compare(acct("A1", "5"), CisAccount(D("7"), cash_only=True), rules, IcFlags(False, False))
    assert item.outcome is Outcome.BALANCE_MISMATCH
    assert "flags differ too" in item.message
    correction = plan_correction(item, rules)
    assert correction.balance_due == D("7.00") and correction.block_payments_cc is True


# engine building blocks -------------------------------------------------------------------------


@dataclass
class Inv:
    account_number: str
    invoice_number: str
    invoice_date: date | None
    balance_due: Decimal
    total_amount_due: Decimal


def test_group_accounts_keeps_the_latest_invoice_and_refuses_an_unordered_list():
    invoices = [
        Inv("A1", "9", date(2026, 1, 1), D("10"), D("10")),
        Inv("A1", "10", date(2026, 2, 1), D("25"), D("25")),  # latest: by date, then number (10 > 9)
        Inv("B2", "11", date(2026, 2, 1), D("3"), D("3")),
    ]
    accounts = list(group_accounts(invoices))
    assert [(a.account_number, a.invoice_number, a.balance_due, a.open_invoices) for a in accounts] == [
        ("A1", "10", D("25"), 2),
        ("B2", "11", D("3"), 1),
    ]
    with pytest.raises(IcOrderError, match="not ordered"):
        list(group_accounts([*invoices, Inv("A1", "12", None, D("1"), D("1"))]))


def test_prefetch_yields_in_order_and_raises_the_source_error():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("page 2 failed")

    got = []
    with pytest.raises(ValueError, match="page 2"):
        for value in prefetch(broken(), depth=2):
            got.append(value)
    assert got == [1]


def test_retries_only_transient_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("reset")
        return "ok"

    assert with_retries(flaky, FAST, sleep=lambda s: None) == "ok" and len(calls) == 3

    calls.clear()

    def not_found():
        calls.append(1)
        raise LookupNotFound("no such account")

    with pytest.raises(LookupNotFound):
        with_retries(not_found, FAST, sleep=lambda s: None)
    assert len(calls) == 1

    waits = []
    with pytest.raises(requests.Timeout):
        with_retries(lambda: (_ for _ in ()).throw(requests.Timeout("slow")), FAST, sleep=waits.append)
    assert waits == [0.001, 0.002]  # backoff doubles, capped; attempts=3 -> 2 waits


# the engine on a fake CIS -----------------------------------------------------------------------


class FakeCis:
    """An in-process CIS: balances by account, plus scripted behaviours, counting calls."""

    def __init__(self, balances: dict[str, CisAccount], *, delay: float = 0.0) -> None:
        self.balances = balances
        self.delay = delay
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_first: dict[str, int] = {}

    def __call__(self, account: str, invoice: str) -> CisAccount:
        with self.lock:
            self.calls[account] = self.calls.get(account, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failures_left = self.fail_first.get(account, 0)
            if failures_left:
                self.fail_first[account] = failures_left - 1
        try:
            if self.delay:
                time.sleep(self.delay)
            if failures_left:
                raise requests.Timeout("CIS did not answer")
            if account.startswith("DOWN"):
                raise requests.ConnectionError("connection refused")
            if account.startswith("REFUSE"):
                raise LookupRefused("Success=false: account locked")
            if account not in self.balances:
                raise LookupNotFound(f"Account {account} not found")
            return self.balances[account]
        finally:
            with self.lock:
                self.in_flight -= 1


def test_engine_outcomes_and_bounds():
    accounts = [acct(f"A{i:04d}", "10.00") for i in range(40)]
    accounts += [acct("B0001", "12.50"), acct("DOWN1", "1"), acct("REFUSE1", "1"), acct("ZNOPE", "1")]
    cis = FakeCis({a.account_number: CisAccount(D("10.00")) for a in accounts[:40]}, delay=0.01)
    cis.balances["B0001"] = CisAccount(D("12.00"))
    cis.fail_first["A0003"] = 2  # recovers on the third attempt
    limits = Limits(max_in_flight=4, attempts=3, backoff_seconds=0.001, backoff_max_seconds=0.001)
    items = []
    summary = Reconciler(cis, None, Settings(limits=limits)).run(accounts, items.append, window=8)
    outcomes = {i.account_number: i.outcome for i in items}
    assert [i.account_number for i in items] == [a.account_number for a in accounts]  # IC order kept
    assert outcomes["A0003"] is Outcome.MATCH and cis.calls["A0003"] == 3
    assert outcomes["B0001"] is Outcome.BALANCE_MISMATCH
    assert outcomes["DOWN1"] is Outcome.CIS_ERROR and cis.calls["DOWN1"] == 3
    assert "after 3 attempts" in next(i for i in items if i.account_number == "DOWN1").message
    assert outcomes["REFUSE1"] is Outcome.CIS_ERROR and cis.calls["REFUSE1"] == 1
    assert outcomes["ZNOPE"] is Outcome.MISSING_IN_CIS and cis.calls["ZNOPE"] == 1
    assert summary.accounts_checked == 44
    assert summary.counts[Outcome.MATCH] == 40 and summary.counts[Outcome.CIS_ERROR] == 2
    assert summary.sum_abs_difference == D("0.50") and summary.net_difference == D("0.50")
    assert 1 < cis.max_in_flight <= 4


def test_engine_memory_is_bounded_by_the_window():
    """The engine pulls accounts lazily: never more than `window` ahead of the results."""
    pulled = []
    delivered = []

    def source():
        for i in range(200):
            pulled.append(i)
            assert len(pulled) - len(delivered) <= 9, "pulled too far ahead"
            yield acct(f"A{i:04d}", "1")

    cis = FakeCis({f"A{i:04d}": CisAccount(D("1")) for i in range(200)})
    Reconciler(cis, None, Settings(limits=FAST)).run(source(), delivered.append, window=8)
    assert len(delivered) == 200


# corrections against the IC simulator (real HTTP) -----------------------------------------------


def _seed(ic_sim, accounts: dict[str, tuple[str, str]], flags: dict[str, tuple[bool, bool]] | None = None):
    for n, (account, (balance, total)) in enumerate(sorted(accounts.items())):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, account, f"INV{n:05d}", total, balance)
        cc, eft = (flags or {}).get(account, (False, False))
        ic_sim.sim.add_customer(ic_sim.biller_guid, account, block_payments_cc=cc, block_payments_eft=eft)


def _ic_balances(ic_sim) -> dict[str, tuple[Decimal, Decimal]]:
    invoices = ic_sim.sim.invoices(ic_sim.biller_guid)
    return {i["account_number"]: (i["balance_due"], i["total_amount_due"]) for i in invoices}


@pytest.fixture
def store(tmp_path):
    s = ReconcileStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.dispose()


def _run(ic_sim, store, cis, settings, threshold=2.0, biller="t_bill"):
    client = ic_sim.client(timeout=10)
    return run_balance_all(
        biller_id=biller,
        week="2026-W45",
        accounts=ic_accounts(client, page_size=3),
        cis_lookup=cis,
        ic_side=InvoiceCloudSide(client),
        settings=settings,
        error_threshold_pct=threshold,
        store=store,
        dag_run_id="manual__1",
        batch_size=2,
    )


def test_corrections_in_ic_with_before_and_after(ic_sim, store):
    _seed(ic_sim, {"100": ("10.00", "10.00"), "200": ("20.00", "30.00"), "300": ("5.00", "5.00")},
          flags={"300": (True, False)})
    cis = FakeCis({
        "100": CisAccount(D("10.00"), cash_only=False),
        "200": CisAccount(D("18.50"), cash_only=False),
        "300": CisAccount(D("5.00"), cash_only=True),
    })
    rules = Rules(cash_only=True)
    report = _run(ic_sim, store, cis, Settings(rules=rules, limits=FAST, corrections_allowed=True))
    assert report.status == SUCCEEDED and report.summary.corrections_made == 2
    assert _ic_balances(ic_sim)["200"] == (D("18.50"), D("30.00"))  # TotalAmountDue untouched without version 2
    customer = next(c for c in ic_sim.sim.customers(ic_sim.biller_guid) if c["account_number"] == "300")
    assert customer["block_payments_cc"] is True and customer["block_payments_eft"] is True
    items = {i["account_number"]: i for i in store.items(report.run_id)}
    assert set(items) == {"200", "300"}  # matches are counted, not stored
    assert items["200"]["before"] == {"BalanceDue": "20.00"} and items["200"]["after"] == {"BalanceDue": "18.50"}
    assert items["200"]["corrected"] is True and items["200"]["difference"] == D("1.50")
    assert items["300"]["outcome"] == "flags_mismatch"
    assert items["300"]["before"] == {"BlockPaymentsCC": True, "BlockPaymentsEFT": False}
    assert items["300"]["after"] == {"BlockPaymentsCC": True, "BlockPaymentsEFT": True}
    # a second run finds nothing left to correct
    again = _run(ic_sim, store, cis, Settings(rules=rules, limits=FAST, corrections_allowed=True))
    assert again.summary.counts[Outcome.MATCH] == 3 and again.summary.corrections_made == 0


def test_dry_run_changes_nothing_but_records_the_plan(ic_sim, store):
    _seed(ic_sim, {"100": ("10.00", "12.00")})
    cis = FakeCis({"100": CisAccount(D("9.00"), future_balance=D("11.00"))})
    settings = Settings(rules=Rules(future_balance=True), limits=FAST, corrections_allowed=True, dry_run=True)
    report = _run(ic_sim, store, cis, settings)
    assert _ic_balances(ic_sim)["100"] == (D("10.00"), D("12.00"))
    [item] = store.items(report.run_id)
    assert item["corrected"] is False and "dry run" in item["message"]
    assert item["after"] == {"BalanceDue": "9.00", "TotalAmountDue": "11.00"}
    run = store.run(report.run_id)
    assert run.dry_run and run.corrections_made == 0


def test_corrections_not_allowed_leave_ic_alone(ic_sim, store):
    _seed(ic_sim, {"100": ("10.00", "10.00")})
    report = _run(ic_sim, store, FakeCis({"100": CisAccount(D("1.00"))}), Settings(limits=FAST))
    assert _ic_balances(ic_sim)["100"][0] == D("10.00")
    [item] = store.items(report.run_id)
    assert item["outcome"] == "balance_mismatch" and item["before"] is None and not item["corrected"]


def test_threshold_fails_the_run_after_storing_its_report(ic_sim, store):
    _seed(ic_sim, {f"{n:03d}": ("1.00", "1.00") for n in range(1, 11)} | {"DOWN1": ("1.00", "1.00")})
    cis = FakeCis({f"{n:03d}": CisAccount(D("1.00")) for n in range(1, 11)})
    with pytest.raises(ThresholdExceeded, match=r"1 of 11 accounts \(9\.1 %\)") as caught:
        _run(ic_sim, store, cis, Settings(limits=FAST), threshold=2.0)
    run = store.run(caught.value.report.run_id)
    assert run.status == FAILED_THRESHOLD and run.counts["cis_error"] == 1 and run.accounts_checked == 11
    assert [i["account_number"] for i in store.items(run.id)] == ["DOWN1"]
    # the same errors under a higher threshold: the run succeeds
    assert _run(ic_sim, store, cis, Settings(limits=FAST), threshold=10.0).status == SUCCEEDED


def test_ic_failure_stops_the_run_and_keeps_what_was_checked(ic_sim, store, monkeypatch):
    # no customer records: ListOpenInvoices sends nil payment blocks, so the engine asks
    # ViewCustomerRecord, and IC is down
    for n, account in enumerate(("100", "200")):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, account, f"INV{n:05d}", "1.00", "1.00")
    cis = FakeCis({"100": CisAccount(D("5.00"), cash_only=False), "200": CisAccount(D("2.00"), cash_only=False)})
    client = ic_sim.client(timeout=10)
    side = InvoiceCloudSide(client)

    def down(account):
        raise requests.ConnectionError("IC unreachable")

    monkeypatch.setattr(side, "flags", down)
    with pytest.raises(IcUnavailable):
        run_balance_all(
            biller_id="t_bill", week="2026-W45", accounts=ic_accounts(client), cis_lookup=cis, ic_side=side,
            settings=Settings(rules=Rules(cash_only=True), limits=FAST), error_threshold_pct=2, store=store,
        )
    [run] = store.runs("t_bill")
    assert run.status == FAILED and "IC ViewCustomerRecord failed" in run.message


def test_iso_week_is_in_the_billers_time_zone():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    sunday_utc = datetime(2026, 11, 9, 2, 0, tzinfo=UTC)  # Monday in UTC, still Sunday in New York
    assert iso_week(sunday_utc, UTC) == "2026-W46"
    assert iso_week(sunday_utc, ZoneInfo("America/New_York")) == "2026-W45"


# storage on SQLite and PostgreSQL ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        yield ReconcileStore(url)
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg2

    name = f"icb_recon_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    store = ReconcileStore(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    try:
        yield store
    finally:
        store.dispose()
        admin.cursor().execute(f"DROP DATABASE {name}")
        admin.close()


def test_store_round_trip_sort_filter_page(any_store):
    from sqlalchemy import text

    from icbridge.reconcile.compare import error_item
    from icbridge.reconcile.engine import Summary

    store = any_store
    run_id = store.start_run("b1", "2026-W45", dag_run_id="r1", dry_run=False, corrections_allowed=True,
                             error_threshold_pct=2.0)
    items = [compare(acct(f"A{i:03d}", "50.00" if i == 50 else f"{i}.10"), CisAccount(D("50.00")), Rules())
             for i in range(1, 121)]
    items.append(error_item(acct("Z999", "1"), Outcome.CIS_ERROR, "fault: server busy"))
    summary = Summary()
    for item in items:
        summary.add(item)
    assert store.add_items(run_id, [i for i in items if i.outcome is not Outcome.MATCH]) == 120
    store.finish_run(run_id, summary, SUCCEEDED)
    run = store.run(run_id)
    assert run.accounts_checked == 121 and run.counts["match"] == 1 and run.counts["cis_error"] == 1
    assert run.net_difference == sum((i.difference for i in items if i.difference is not None), D(0))
    assert run.sum_abs_difference == sum((abs(i.difference) for i in items if i.difference is not None), D(0))
    by_diff = store.items(run_id, sort="difference", descending=True, limit=3)
    assert [r["difference"] for r in by_diff] == [D("70.10"), D("69.10"), D("68.10")]
    page2 = store.items(run_id, outcome="balance_mismatch", sort="account_number", offset=50, limit=25)
    assert len(page2) == 25 and page2[0]["account_number"] == "A052"  # A050 matched: not stored
    assert store.count_items(run_id, "cis_error") == 1
    assert len(list(store.iter_items(run_id, chunk=7))) == 120
    assert len(list(store.differences(run_id))) == 119
    with pytest.raises(ValueError):
        store.items(run_id, sort="id; drop table x")
    # an analyst's SQL works as the docs say
    with store.engine.connect() as conn:
        total = conn.execute(
            text(
                "SELECT SUM(ABS(difference)) FROM icb_balance_items"
                " WHERE run_id = :r AND outcome = 'balance_mismatch'"
            ),
            {"r": run_id},
        ).scalar()
    assert round(D(str(total)), 2) == run.sum_abs_difference
    # a second attempt of the same Airflow run marks an unfinished first one `interrupted`
    first = store.start_run("b1", "2026-W46", dag_run_id="r2", dry_run=True, corrections_allowed=False,
                            error_threshold_pct=2)
    store.start_run("b1", "2026-W46", dag_run_id="r2", dry_run=True, corrections_allowed=False, error_threshold_pct=2)
    assert store.run(first).status == "interrupted"
    assert [r.week for r in store.history("b1")] == ["2026-W45"]
