"""The balances (RTDR), payments and customer-changes flows, without Airflow, against the real
IC, inHance and AUS simulators over HTTP: each rule 1-7, each fault kind, the payment ledger
(at most once per PaymentGUID, in doubt, settle), and backfill exactness."""

from __future__ import annotations

import socket
from datetime import timedelta
from decimal import Decimal

import pytest

from icbridge.calls import CallPolicy
from icbridge.cli import main as cli
from icbridge.flows.sync_common import Interval, SyncFailed, is_not_sent
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import DEFAULT, CisEndpoint
from icbridge.soap.inhance import InhanceClient
from icbridge.state.payments import PaymentLedger
from tests.support.sync_world import IV, POLICY, T0, World, sync_biller

NEXT = Interval(IV.end, IV.end + timedelta(minutes=15))
CV = "CV-202603020930"


def _ic_invoice(world: World, number: str) -> dict:
    return next(i for i in world.ic.sim.invoices(world.guid) if i["invoice_number"] == number)


def _ic_customer(world: World, account: str) -> dict:
    return next(c for c in world.ic.sim.customers(world.guid) if c["account_number"] == account)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/inhance/t_inhance/payments/iCloud.asmx"


# --- rules ---------------------------------------------------------------------------------


def test_rule1_version1_updates_balance_due_only(world):
    world.touch("1001")
    report = world.balances(sync_biller("inhance", rtdr_version=1))
    assert report.counts["updated"] == 1
    invoice = _ic_invoice(world, "7001")
    assert (invoice["balance_due"], invoice["total_amount_due"]) == (Decimal("80.00"), Decimal("100.00"))
    [call] = world.inhance.received("t_inhance", "BalanceCheck")
    assert call["args"]["LastInvoiceNumber"] in (7001, "7001")


def test_rule1_version2_future_balance_updates_total_amount_due(world):
    world.touch("1001")
    world.balances(sync_biller("inhance", rtdr_version=2))
    invoice = _ic_invoice(world, "7001")
    assert (invoice["balance_due"], invoice["total_amount_due"]) == (Decimal("80.00"), Decimal("105.00"))


@pytest.mark.parametrize("updates_email", [False, True])
def test_rule2_email_only_when_configured_and_phone_never(world, updates_email):
    world.touch("1001")
    world.balances(sync_biller("inhance", rtdr_updates_email=updates_email))
    customer = _ic_customer(world, "1001")
    assert customer["email_address"] == ("cis@example.org" if updates_email else "ic@example.org")
    assert customer["phone"] == "555-0000"


def test_rule3_business_failure_is_recorded_and_the_run_goes_on(world):
    for minute, account in enumerate(("1001", "1002", "1003"), start=1):  # 1003: not in the CIS
        world.touch(account, minute)
    world.inhance.faults.set("BalanceCheck", kind="business", times=1, message="CIS busy")  # hits 1001
    one_at_a_time = CallPolicy(in_flight=1, per_second=0, attempts=3, backoff_seconds=0)
    report = world.balances(sync_biller("inhance"), policy=one_at_a_time)  # does not raise
    assert report.counts["cis_not_found"] + report.counts["cis_refused"] == 2
    assert report.counts["updated"] == 1
    assert report.counts["cis_not_found"] == 1 and report.counts["cis_refused"] == 1
    assert {i["outcome"] for i in report.items} == {"cis_not_found", "cis_refused"}
    assert all(i["account"] == "****" for i in report.items)  # masked in the report


def test_rule4_conveyed_account_is_sent_without_suffix(world):
    biller = sync_biller("inhance")
    guid = world.pay(f"1001{CV}")
    world.ic.sim.add_change(world.guid, f"1001-{CV}", "AutoPay", "True", T0 + timedelta(minutes=2))
    world.payments(biller)
    world.changes(biller)
    [payment] = world.inhance.payments("t_inhance")
    assert payment["account_number"] == "1001" and payment["reference"] == guid
    [change] = world.inhance.changes("t_inhance")
    assert (change["account_number"], change["field"], change["value"]) == ("1001", "autopay", True)
    row = world.row(biller, guid)
    assert (row.account_number, row.cis_account) == (f"1001{CV}", "1001")


@pytest.mark.parametrize(("setting", "sent"), [(None, "Credit Card"), ("PayPal", "PayPal")])
def test_rule5_paypal_payment_type(world, setting, sent):
    biller = sync_biller("inhance", **({"paypal_payment_type": setting} if setting else {}))
    world.pay("1001", payment_type="PayPal")
    world.pay("1002", invoice="7002", payment_type="ACH")
    world.payments(biller)
    types = {p["account_number"]: p["payment_type"] for p in world.inhance.payments("t_inhance")}
    assert types == {"1001": sent, "1002": "ACH"}


def test_rule6_each_method_uses_its_own_endpoint_and_password(world):
    biller = sync_biller("inhance")
    world.pay("1001")
    world.payments(biller)
    world.balances(biller)
    [payment] = world.inhance.received("t_inhance", "MakePaymentExtended")
    [rtdr] = world.inhance.received("t_inhance", "BalanceCheck")
    assert (payment["endpoint"], payment["ok"]) == (world.inhance.endpoint_path("t_inhance", "payments"), True)
    assert (rtdr["endpoint"], rtdr["ok"]) == (world.inhance.endpoint_path("t_inhance"), True)
    # the payments password is not the RTDR one: swapped keys are refused, nothing applied
    wrong = InhanceClient({
        DEFAULT: CisEndpoint(world.inhance.endpoint_url("t_inhance"), world.keys["inhance"]),
        "MakePaymentExtended": CisEndpoint(world.inhance.endpoint_url("t_inhance", "payments"), world.keys["inhance"]),
    }, timeout=10)
    world.pay("1002", invoice="7002", when=NEXT.start + timedelta(minutes=1))
    with pytest.raises(SyncFailed):
        world.payments(biller, NEXT, client=wrong)
    assert len(world.inhance.payments("t_inhance")) == 1


@pytest.mark.parametrize("cash_only", [True, False])
def test_rule7_aus_cash_only_blocks_both_payment_types(world, cash_only):
    account = "1002" if cash_only else "1001"
    world.ic.sim.add_customer(world.guid, account, block_payments_cc=not cash_only, block_payments_eft=False)
    world.touch(account)
    report = world.balances(sync_biller("aus"))
    assert report.counts["updated"] == 1
    customer = _ic_customer(world, account)
    assert (customer["block_payments_cc"], customer["block_payments_eft"]) == (cash_only, cash_only)
    assert _ic_invoice(world, "7002" if cash_only else "7001")["balance_due"] == Decimal("10.00" if cash_only
                                                                                          else "80.00")


# --- balances: active accounts and faults ----------------------------------------------------


def test_balances_active_accounts_come_from_payments_and_change_log(world):
    world.ic.sim.add_change(world.guid, "1002", "Email", "x@example.org", T0 + timedelta(minutes=3))
    world.ic.sim.add_change(world.guid, "1001", "Paperless", "True", NEXT.start)  # next interval: not active
    report = world.balances(sync_biller("inhance"))
    assert report.counts == {"updated": 1}
    assert _ic_invoice(world, "7002")["balance_due"] == Decimal("10.00")  # invoice found via ListOpenInvoices
    assert _ic_invoice(world, "7001")["balance_due"] == Decimal("100.00")


def test_balances_defer_an_account_whose_payment_is_not_posted_yet(world):
    biller = sync_biller("inhance")
    world.pay("1001")
    report = world.balances(biller)
    assert report.counts == {"deferred_payment_not_posted": 1}
    assert _ic_invoice(world, "7001")["balance_due"] == Decimal("100.00")
    world.payments(biller)  # posted: the CIS balance now includes it
    report = world.balances(biller)
    assert report.counts == {"updated": 1}
    assert _ic_invoice(world, "7001")["balance_due"] == Decimal("55.00")  # 80 - 25 (inHance live posting)


@pytest.mark.parametrize("kind", ["latency", "http500", "fault", "drop", "late"])
def test_balances_transient_faults_are_retried(world, kind):
    world.pay("1001", payment_type="ACH", channel="CloudPay")  # not pumped: not deferred
    world.inhance.faults.set("BalanceCheck", kind=kind, seconds=1.5 if kind == "late" else 0.2, times=1)
    report = world.balances(sync_biller("inhance"), timeout=1)
    assert report.counts == {"updated": 1}
    assert world.inhance.faults.fired == [("BalanceCheck", kind)]
    assert _ic_invoice(world, "7001")["balance_due"] == Decimal("80.00")


@pytest.mark.parametrize("kind", ["http500", "fault", "drop"])
def test_balances_fail_the_run_only_when_no_cis_call_gets_through(world, kind):
    for account in ("1001", "1002"):
        world.pay(account, invoice=f"700{account[-1]}", channel="CloudPay")
    world.inhance.faults.set("BalanceCheck", kind=kind)
    with pytest.raises(SyncFailed) as failed:
        world.balances(sync_biller("inhance"))
    assert failed.value.retry and failed.value.report.counts == {"cis_error": 2}
    world.inhance.faults.set("BalanceCheck", kind=kind, rate=0.5, seed=1)  # some get through: the run succeeds
    report = world.balances(sync_biller("inhance"))
    assert report.counts["updated"] >= 1


# --- payments: ledger, faults, settle ---------------------------------------------------------


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_post_once_and_rerun_posts_nothing(world, cis):
    biller = sync_biller(cis)
    g1 = world.pay("1001")
    g2 = world.pay("1002", invoice="7002", channel="IVR")
    world.pay("1001", channel="CloudPay")  # in-office payment: not pumped
    report = world.payments(biller)
    assert report.counts == {"posted": 2, "skipped_channel": 1}
    again = world.payments(biller, run_id="r2#try1")
    assert again.counts == {"already_posted": 2, "skipped_channel": 1}
    assert sorted(p["reference"] for p in world.sim(cis).payments(f"t_{cis}")) == sorted([g1, g2])
    if cis == "aus":
        assert world.row(biller, g1).cis_reference  # PendingPaymentID kept


def test_backfill_of_adjacent_intervals_posts_each_payment_once(world):
    biller = sync_biller("inhance")
    first = world.pay("1001", when=IV.end - timedelta(microseconds=1))
    second = world.pay("1002", invoice="7002", when=NEXT.start)
    assert world.payments(biller, IV).counts == {"posted": 1}
    assert world.payments(biller, NEXT).counts == {"posted": 1}
    assert world.payments(biller, IV, run_id="backfill#try1").counts == {"already_posted": 1}
    assert [p["reference"] for p in world.inhance.payments("t_inhance")] == [first, second]


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_late_answer_is_in_doubt_and_never_posted_twice(world, cis):
    biller = sync_biller(cis)
    method = "MakePaymentExtended" if cis == "inhance" else "AddPendingPayment"
    doubt = world.pay("1001")
    fine = world.pay("1002", invoice="7002")
    world.sim(cis).faults.set(method, kind="late", seconds=2, times=1)
    with pytest.raises(SyncFailed) as failed:
        world.payments(biller, timeout=1)
    assert not failed.value.retry
    assert len(world.sim(cis).payments(f"t_{cis}")) == 2  # the CIS applied both (one answered late)
    statuses = {world.row(biller, g).status for g in (doubt, fine)}
    assert statuses == {"posted", "in_doubt"}
    late = doubt if world.row(biller, doubt).status == "in_doubt" else fine
    assert late in str(failed.value) and "1001" not in str(failed.value).replace(late, "")
    # a retry does not post it again, and still fails naming it
    with pytest.raises(SyncFailed) as again:
        world.payments(biller, run_id="r1#try2")
    assert late in str(again.value) and again.value.report.counts["in_doubt_earlier"] == 1
    assert len(world.sim(cis).payments(f"t_{cis}")) == 2
    # ops: the CIS has it -> next run quiet
    assert cli(["payments", "--db", world.state_url, "settle", "--biller", biller.biller_id, "--payment-guid", late,
                "--outcome", "posted", "--reason", "CIS shows the pending payment"]) == 0
    assert world.payments(biller, run_id="r2#try1").counts == {"already_posted": 2}
    assert len(world.sim(cis).payments(f"t_{cis}")) == 2


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_a_soap_fault_on_a_payment_is_a_refusal_not_in_doubt(world, cis):
    """The CIS answered a fault: it refused (issue 11). Recorded refused, never re-sent by itself."""
    biller = sync_biller(cis)
    method = "MakePaymentExtended" if cis == "inhance" else "AddPendingPayment"
    guid = world.pay("1001")
    world.sim(cis).faults.set(method, kind="fault", times=1)
    with pytest.raises(SyncFailed) as failed:
        world.payments(biller)
    assert guid in str(failed.value) and not failed.value.retry
    assert world.row(biller, guid).status == "refused"
    assert "SOAP fault" in world.row(biller, guid).message
    with pytest.raises(SyncFailed) as again:
        world.payments(biller, run_id="r2#try1")
    assert again.value.report.counts == {"refused_earlier": 1}  # not sent again
    assert world.sim(cis).payments(f"t_{cis}") == []


@pytest.mark.parametrize("kind", ["http500", "drop"])
def test_unknown_outcomes_are_in_doubt_and_resend_posts_once(world, kind):
    biller = sync_biller("inhance")
    guid = world.pay("1001")
    world.inhance.faults.set("MakePaymentExtended", kind=kind, times=1)
    with pytest.raises(SyncFailed) as failed:
        world.payments(biller)
    assert guid in str(failed.value) and not failed.value.retry
    assert world.row(biller, guid).status == "in_doubt"
    assert world.inhance.payments("t_inhance") == []  # the simulator did not apply it; we cannot know that
    assert world.inhance.faults.fired == [("MakePaymentExtended", kind)]  # tried once, never retried
    with pytest.raises(SyncFailed):
        world.payments(biller, run_id="r1#try2")
    assert world.inhance.payments("t_inhance") == []
    world.ledger.settle(biller.biller_id, guid, "resend", note="not in the CIS")
    assert world.payments(biller, run_id="r2#try1").counts == {"posted": 1}
    assert world.payments(biller, run_id="r3#try1").counts == {"already_posted": 1}
    assert len(world.inhance.payments("t_inhance")) == 1


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_a_resend_of_an_earlier_interval_is_sent_once_by_the_next_run(world, cis):
    """Ops settle a payment `resend`: the next run of any interval sends it (read again from
    IC), and clearing its own interval's run later does not send it a second time."""
    biller = sync_biller(cis)
    method = "MakePaymentExtended" if cis == "inhance" else "AddPendingPayment"
    guid = world.pay(f"1001{CV}", payment_type="PayPal")
    world.sim(cis).faults.set(method, kind="http500", times=1)
    with pytest.raises(SyncFailed):
        world.payments(biller)
    assert world.row(biller, guid).status == "in_doubt" and world.sim(cis).payments(f"t_{cis}") == []
    world.ledger.settle(biller.biller_id, guid, "resend", note="not in the CIS")
    assert world.payments(biller, interval=NEXT, run_id="r2#try1").counts == {"posted": 1}
    (sent,) = world.sim(cis).payments(f"t_{cis}")
    assert world.row(biller, guid).status == "posted"
    assert world.payments(biller, run_id="r1#try3").counts == {"already_posted": 1}  # its own run, cleared
    assert world.payments(biller, interval=NEXT, run_id="r3#try1").counts == {}
    assert world.sim(cis).payments(f"t_{cis}") == [sent]
    # the same rules as any payment: rule 4 (conveyance suffix dropped), rule 5 (inHance: PayPal)
    assert sent["account_number"] == "1001"
    assert sent["payment_type"] == ("Credit Card" if cis == "inhance" else "PayPal")


def test_a_resend_that_ic_no_longer_lists_is_left_alone(world, caplog):
    biller = sync_biller("inhance")
    assert world.ledger.claim(biller.biller_id, "GONE-1", account_number="1001", cis_account="1001",
                              invoice_number="7001", amount=Decimal("5.00"), convenience_fee=Decimal(0),
                              payment_type="CreditCard", payment_date=T0, cis="inhance", run_id="old#try1")
    world.ledger.finish(biller.biller_id, "GONE-1", "resend", message="not sent")
    assert world.payments(biller, interval=NEXT).counts == {}
    assert world.row(biller, "GONE-1").status == "resend" and world.inhance.payments("t_inhance") == []
    assert "GONE-1 is marked resend but IC does not list it" in caplog.text


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_business_refusal_is_recorded_not_resent_and_fails_the_run(world, cis):
    biller = sync_biller(cis)
    method = "MakePaymentExtended" if cis == "inhance" else "AddPendingPayment"
    refused = world.pay("1001")
    ok = world.pay("1002", invoice="7002")
    world.sim(cis).faults.set(method, kind="business", times=1, message="Account closed")
    with pytest.raises(SyncFailed) as failed:
        world.payments(biller)
    rows = {g: world.row(biller, g) for g in (refused, ok)}
    bad = next(g for g, r in rows.items() if r.status == "refused")
    assert rows[bad].message == "Account closed" and bad in str(failed.value)
    assert {r.status for r in rows.values()} == {"refused", "posted"}
    with pytest.raises(SyncFailed):  # a re-run does not resend it, and still names it
        world.payments(biller, run_id="r2#try1")
    assert len(world.sim(cis).payments(f"t_{cis}")) == 1
    world.ledger.settle(biller.biller_id, bad, "ignore", note="refunded in IC")
    assert world.payments(biller, run_id="r3#try1").counts == {"already_posted": 1, "already_ignored": 1}


def test_latency_within_the_timeout_posts_normally(world):
    biller = sync_biller("inhance")
    world.pay("1001")
    world.inhance.faults.set("MakePaymentExtended", kind="latency", seconds=0.3)
    assert world.payments(biller, timeout=5).counts == {"posted": 1}
    assert len(world.inhance.payments("t_inhance")) == 1


def test_cis_not_reached_is_known_not_sent_retried_and_sent_by_the_next_try(world):
    biller = sync_biller("inhance")
    guid = world.pay("1001")
    with pytest.raises(SyncFailed) as failed:
        world.payments(biller, payments_url=_closed_port_url())
    assert failed.value.retry and failed.value.report.counts == {"not_sent": 1}
    row = world.row(biller, guid)
    assert (row.status, row.attempts) == ("resend", POLICY.attempts)
    assert world.payments(biller, run_id="r1#try2").counts == {"posted": 1}
    assert len(world.inhance.payments("t_inhance")) == 1


def test_a_row_left_sending_by_a_crashed_try_is_in_doubt(world):
    biller = sync_biller("inhance")
    guid = world.pay("1001")
    payment = world.ic_client().list_payments(IV.start, IV.end)[0]
    assert world.ledger.claim(biller.biller_id, guid, account_number="1001", cis_account="1001", invoice_number="7001",
                              amount=payment.payment_amount, convenience_fee=Decimal(0), payment_type="CreditCard",
                              payment_date=payment.payment_date, cis="inhance", run_id="r1#try1")
    with pytest.raises(SyncFailed) as failed:  # the next try of the same run
        world.payments(biller, run_id="r1#try2")
    assert guid in str(failed.value) and world.row(biller, guid).status == "in_doubt"
    assert world.inhance.received("t_inhance", "MakePaymentExtended") == []


def test_cli_show_and_settle_only_settles_what_needs_ops(world, capsys):
    biller = sync_biller("inhance")
    guid = world.pay("1001")
    world.payments(biller)
    assert cli(["payments", "--db", world.state_url, "show", "--biller", biller.biller_id]) == 0
    assert guid in capsys.readouterr().out
    assert cli(["payments", "--db", world.state_url, "settle", "--biller", biller.biller_id, "--payment-guid", guid,
                "--outcome", "resend", "--reason", "x"]) == 2
    assert "only in_doubt or refused" in capsys.readouterr().err


def test_is_not_sent_only_for_connections_never_made():
    """One judgement, made by the transport (tests/integration/soap/test_soap_hostile.py drives it with real
    sockets): only its NotSent counts; a bare requests error of unknown origin never does."""
    import requests

    from icbridge.soap.errors import AnswerTimeout, NoAnswer, NotSent, TlsRefused

    assert not is_not_sent(requests.ReadTimeout("read timed out"))
    assert not is_not_sent(requests.ConnectionError("Connection aborted: RemoteDisconnected"))
    assert not is_not_sent(requests.ConnectTimeout("connect timed out"))
    assert not is_not_sent(NoAnswer("reset after sending")) and not is_not_sent(AnswerTimeout("slow"))
    assert is_not_sent(NotSent("refused")) and is_not_sent(TlsRefused("certificate"))


# --- customer changes -----------------------------------------------------------------------


def test_inhance_changes_paperless_autopay_email_and_phone_ignored(world):
    for account, kind, value, minute in (("1001", "Paperless", "True", 1), ("1001", "Paperless", "False", 2),
                                         ("1002", "AutoPay", "True", 3), ("1001", "Email", "new@example.org", 4),
                                         ("1002", "Phone", "555-1234", 5)):
        world.ic.sim.add_change(world.guid, account, kind, value, T0 + timedelta(minutes=minute))
    report = world.changes(sync_biller("inhance"))
    assert report.counts == {"applied_paperless": 1, "applied_autopay": 1, "applied_email": 1, "ignored_phone": 1,
                             "superseded": 1}
    applied = {(c["account_number"], c["field"], c["value"]) for c in world.inhance.changes("t_inhance")}
    assert applied == {("1001", "paperless", False), ("1002", "autopay", True), ("1001", "email", "new@example.org")}
    assert world.inhance.account("t_inhance", "1002")["phone"] == ""


def test_aus_changes_paperless_autopay_and_skips_email_phone(world):
    for account, kind, value in (("1001", "Paperless", "True"), ("1002", "AutoPay", "False"),
                                 ("1001", "Email", "new@example.org"), ("1002", "Phone", "555")):
        world.ic.sim.add_change(world.guid, account, kind, value, T0 + timedelta(minutes=1))
    report = world.changes(sync_biller("aus"))
    assert report.counts == {"applied_paperless": 1, "applied_autopay": 1, "skipped_unsupported_aus_email": 1,
                             "ignored_phone": 1}
    methods = sorted(c["method"] for c in world.aus.changes("t_aus"))
    assert methods == ["UpdateCisLinkTableEBillAndLinkRegistration", "UpdatePaymentPlan"]
    assert world.aus.account("t_aus", "1001")["email"] == "cis@example.org"  # email untouched


@pytest.mark.parametrize("kind", ["latency", "http500", "fault", "drop", "late"])
def test_changes_transient_faults_are_retried_safely(world, kind):
    world.ic.sim.add_change(world.guid, "1001", "Paperless", "On", T0 + timedelta(minutes=1))
    world.inhance.faults.set("SetPaperless", kind=kind, seconds=1.5 if kind == "late" else 0.2, times=1)
    report = world.changes(sync_biller("inhance"), timeout=1)
    assert report.counts == {"applied_paperless": 1}
    assert world.inhance.account("t_inhance", "1001")["paperless"] is True
    applied = len(world.inhance.changes("t_inhance"))
    assert applied == (2 if kind == "late" else 1)  # a late answer was applied, and the retry re-applied it


def test_changes_business_refusal_is_recorded_and_a_lasting_fault_fails_the_run(world):
    world.ic.sim.add_change(world.guid, "1001", "AutoPay", "True", T0 + timedelta(minutes=1))
    world.ic.sim.add_change(world.guid, "1002", "Paperless", "True", T0 + timedelta(minutes=1))
    world.inhance.faults.set("SetAutopay", kind="business", message="Refused")
    report = world.changes(sync_biller("inhance"))
    assert report.counts == {"cis_refused": 1, "applied_paperless": 1}
    world.inhance.faults.set("SetAutopay", kind="drop")
    with pytest.raises(SyncFailed) as failed:
        world.changes(sync_biller("inhance"))
    assert failed.value.retry and failed.value.report.counts == {"error": 1, "applied_paperless": 1}


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_a_refused_web_service_key_applies_nothing_and_fails_at_once(world, cis):
    """The CIS refuses the key (inHance Success=false "Invalid credentials", AUS code 2): the
    payment was not applied, so it is marked resend (not refused, not in doubt) and the run
    fails without retry naming the key; with the key fixed the next run posts it once."""
    biller = sync_biller(cis)
    guid = world.pay("1001")
    if cis == "inhance":
        bad = InhanceClient({
            DEFAULT: CisEndpoint(world.inhance.endpoint_url("t_inhance"), world.keys["inhance"]),
            "MakePaymentExtended": CisEndpoint(world.inhance.endpoint_url("t_inhance", "payments"), "wrong-key"),
        }, timeout=10)
    else:
        bad = AusClient.single(world.aus.endpoint_url("t_aus"), "wrong-key", timeout=10)
    with pytest.raises(SyncFailed, match="refused the web-service key") as failed:
        world.payments(biller, client=bad)
    assert not failed.value.retry
    assert world.row(biller, guid).status == "resend" and world.sim(cis).payments(f"t_{cis}") == []
    assert world.payments(biller, run_id="r2#try1").counts.get("posted") == 1
    assert len(world.sim(cis).payments(f"t_{cis}")) == 1


def test_an_ic_fault_refusing_the_credentials_is_final_not_retried(ic_sim):
    from icbridge.calls import is_transport_error
    from icbridge.soap.errors import CredentialsRefused
    from icbridge.soap.invoice_cloud import InvoiceCloudClient

    client = InvoiceCloudClient(ic_sim.base_url, ic_sim.biller_guid, "wrong-key", timeout=10)
    with pytest.raises(CredentialsRefused, match="credentials refused") as refused:
        client.list_payments(T0, T0 + timedelta(hours=1))
    assert not is_transport_error(refused.value)


def test_operators_fail_at_once_on_refused_credentials():
    from airflow.sdk.exceptions import AirflowFailException

    from icbridge.operators.common import final_errors
    from icbridge.soap.errors import CredentialsRefused

    class Op:
        @final_errors
        def execute(self, context):
            raise CredentialsRefused("invoice_cloud", "ListPayments", "credentials refused: Invalid credentials")

    with pytest.raises(AirflowFailException, match="fix the connection's credentials"):
        Op().execute({})


def test_a_state_db_error_while_claiming_is_not_sent_never_in_doubt(world, monkeypatch):
    """Issue 27 item 2: the state DB refuses the claim (a real SQLite file locked by another
    writer, busy timeout 0.3 s): the payment was never sent, so the run says "not sent" naming
    the state DB and asks for a retry, never "outcome unknown"; the CIS has nothing; once the
    lock is gone the retry posts it once."""
    import sqlite3

    monkeypatch.setenv("ICBRIDGE_STATE_DB_BUSY_TIMEOUT", "0.3")
    ledger = PaymentLedger(world.state_url)  # an engine with the short busy timeout
    world.ledger.dispose()
    world.ledger = ledger
    guid = world.pay("1001")
    holder = sqlite3.connect(world.state_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        with pytest.raises(SyncFailed) as failed:
            world.payments(sync_biller("inhance"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert failed.value.retry
    message = str(failed.value)
    assert "state DB failed while claiming 1 payment(s), so they were not sent" in message
    assert "outcome unknown" not in message and "in doubt)" not in message.replace("nothing is in doubt", "")
    assert world.sim("inhance").payments("t_inhance") == []
    assert world.row(sync_biller("inhance"), guid) is None
    report = world.payments(sync_biller("inhance"), run_id="r1#try2")
    assert report.counts["posted"] == 1 and len(world.sim("inhance").payments("t_inhance")) == 1
