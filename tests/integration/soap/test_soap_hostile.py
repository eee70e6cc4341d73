"""Every SOAP answer kind that IC's and the CIS vendors' ASP.NET (.asmx / IIS) services may
legitimately send — or a proxy in front of them — from a raw-bytes server that shares none of
our code (tests/support/hostile_http.py), against both request renderings (the zeep-rendered client
method and its ``.lean()`` template) and through the flows, asserting what reaches the other
system (issue 11; docs/cis-services.md states the contract).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from icbridge.calls import CallPolicy, call_all, is_transport_error
from icbridge.reconcile.cis import aus_lookup, inhance_lookup
from icbridge.reconcile.engine import LookupTransient
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import CisFault
from icbridge.soap.contract import reset_reports
from icbridge.soap.errors import (
    AnswerTimeout,
    HttpStatusError,
    MalformedAnswer,
    MissingValue,
    NoAnswer,
    NotSent,
    is_not_sent,
)
from icbridge.soap.inhance import InhanceClient
from icbridge.soap.invoice_cloud import InvoiceCloudClient, InvoiceCloudError
from icbridge.vendors import vendor
from tests.support.hostile_http import (
    Continue,
    Cut,
    Drop,
    HostileServer,
    Stall,
    Trickle,
    answer,
    envelope,
    soap12_fault,
)
from tests.support.soap_answers import IC_PAY, TEMPURI, make_payment, method_answer
from tests.support.sync_world import T0, sync_biller

IC_INV = "https://www.invoicecloud.com/portal/webservices/CloudInvoicing/"
NIL = 'xsi:nil="true"'
IIS_500 = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'
    '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>500 - Internal server error.</title></head>'
    "<body><h2>500 - Internal server error.</h2></body></html>"
)


def _balance(fields: str, *, prefix: str = "soap", ns: str = TEMPURI) -> bytes:
    return answer("200 OK", envelope(f'<BalanceCheckResponse xmlns="{ns}"><BalanceCheckResult>{fields}'
                                     "</BalanceCheckResult></BalanceCheckResponse>", prefix=prefix))


def _both(server: HostileServer, **options: Any) -> list[Callable[[], Any]]:
    """BalanceCheck through the zeep-rendered method and through the template (lean)."""
    client = InhanceClient.single(server.url + "/iCloud.asmx", "k3y", timeout=options.pop("timeout", 5), **options)
    return [lambda: client.balance_check("1001", 7), lambda: client.lean().balance_check("1001", 7)]


def _cut_mid_chunk() -> bytes:
    whole = _balance_chunked()
    return whole[: whole.index(b"\r\n\r\n") + 4 + 30]  # headers, a chunk and a half


def _balance_chunked() -> bytes:
    return answer("200 OK", envelope(f'<BalanceCheckResponse xmlns="{TEMPURI}"><BalanceCheckResult>{GOOD}'
                                     "</BalanceCheckResult></BalanceCheckResponse>"), chunked=True)


GOOD = "<Balance>12.34</Balance><FutureBalance>20.05</FutureBalance><Success>true</Success>"

# (case, raw answer steps, expected: a value of the result, or an exception type and a text it names)
BALANCE_CASES: list[tuple[str, list[Any], Any]] = [
    ("other prefixes", [answer("200 OK", envelope(
        f'<a:BalanceCheckResponse xmlns:a="{TEMPURI}"><a:BalanceCheckResult><a:Balance>12.34</a:Balance>'
        "<a:FutureBalance>1</a:FutureBalance><a:Success>true</a:Success></a:BalanceCheckResult>"
        "</a:BalanceCheckResponse>", prefix="s"))], Decimal("12.34")),
    ("reordered and unknown elements", [_balance(
        "<Success>true</Success><NewField2027>x</NewField2027><FutureBalance>1</FutureBalance>"
        "<Balance>12.34</Balance><Extra><Deep>1</Deep></Extra>")], Decimal("12.34")),
    ("Success written True", [_balance("<Balance>12.34</Balance><FutureBalance>1</FutureBalance>"
                                       "<Success>True</Success>")], Decimal("12.34")),
    ("nil Balance", [_balance(f"<Balance {NIL}/><FutureBalance>1</FutureBalance><Success>true</Success>")],
     (MissingValue, "BalanceCheckResult.Balance is required")),
    ("absent Balance", [_balance("<FutureBalance>1</FutureBalance><Success>true</Success>")],
     (MissingValue, "Balance is required")),
    ("empty Balance", [_balance("<Balance/><FutureBalance>1</FutureBalance><Success>true</Success>")],
     (MissingValue, "Balance is required")),
    ("absent Success", [_balance("<Balance>1</Balance><FutureBalance>1</FutureBalance>")],
     (MissingValue, "Success is required")),
    ("Balance in no decimal form", [_balance("<Balance>1,5</Balance><FutureBalance>1</FutureBalance>"
                                             "<Success>true</Success>")], (MalformedAnswer, "is not a decimal")),
    ("SOAP 1.1 fault", [answer("500 Internal Server Error", envelope(
        "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Server was unable to process request. "
        "---&gt; Object reference not set</faultstring></soap:Fault>"))], (CisFault, "Object reference not set")),
    ("SOAP 1.2 fault", [answer("500 Internal Server Error", soap12_fault("Database timeout"),
                               {"Content-Type": "application/soap+xml; charset=utf-8"})],
     (CisFault, "Database timeout")),
    ("IIS 500 page with a DOCTYPE", [answer("500 Internal Server Error", IIS_500, {"Content-Type": "text/html"})],
     (HttpStatusError, "HTTP 500: 500 - Internal server error.")),
    ("IIS 404 page", [answer("404 Not Found", "<html><head><title>404 - File or directory not found.</title>"
                                             "</head></html>", {"Content-Type": "text/html"})],
     (HttpStatusError, "HTTP 404: 404 - File or directory not found.")),
    ("502 from a proxy, plain text", [answer("502 Bad Gateway", "Bad Gateway", {"Content-Type": "text/plain"})],
     (HttpStatusError, "HTTP 502")),
    ("maintenance page 200 HTML", [answer("200 OK", "<html><head><title>Down for maintenance</title></head>"
                                                    "</html>", {"Content-Type": "text/html"})],
     (MalformedAnswer, "Down for maintenance")),
    ("302 to a login page", [answer("302 Found", "", {"Location": "https://login.example.net/sso?x=1"})],
     (HttpStatusError, "redirect to login.example.net not followed")),
    ("100 Continue first", [Continue(_balance(GOOD))], Decimal("12.34")),
    ("chunked answer", [_balance_chunked()], Decimal("12.34")),
    ("answer cut mid-chunk", [Cut(_cut_mid_chunk())], (NoAnswer, "")),
    ("connection dropped after the request", [Drop()], (NoAnswer, "")),
    ("no answer in time", [Stall(3)], (AnswerTimeout, "no answer within 1.0 s")),
    ("answer trickled past the timeout", [Trickle(_balance(GOOD), 0.25)], (AnswerTimeout, "the call's deadline")),
    ("connection closed inside the headers", [Cut(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nServ")],
     (NoAnswer, "before the answer's headers were complete")),
    ("WCF 415, reason in the status line only", [answer(
        "415 Cannot process the message because the content type 'text/xml; charset=utf-8' was not the expected "
        "type 'application/soap+xml; charset=utf-8'.", "")], (HttpStatusError, "HTTP 415: Cannot process the message")),
    ("204 without a length", [answer("204 No Content", "", length=False)], (MalformedAnswer, "empty answer")),
]


@pytest.mark.parametrize(("case", "steps", "expected"), BALANCE_CASES, ids=[c[0] for c in BALANCE_CASES])
def test_balance_check_answers_are_judged_alike_on_both_renderings(hostile, case, steps, expected):
    outcomes = []
    for call in _both(hostile, timeout=1.0):
        hostile.script("/iCloud.asmx", *steps)
        if isinstance(expected, tuple):
            kind, text = expected
            with pytest.raises(kind) as raised:
                call()
            assert text in str(raised.value)
            outcomes.append((type(raised.value), str(raised.value)))
        else:
            result = call()
            assert (result.balance if result.ok else result.message) == expected
            outcomes.append(result)
    assert outcomes[0] == outcomes[1]  # the same bytes give the same values or the same error


def test_keep_alive_connections_are_reused_and_a_closed_one_is_replaced(hostile):
    calls = _both(hostile)
    hostile.script("/iCloud.asmx", _balance(GOOD), _balance(GOOD),
                   answer("200 OK", envelope(f'<BalanceCheckResponse xmlns="{TEMPURI}"><BalanceCheckResult>{GOOD}'
                                             "</BalanceCheckResult></BalanceCheckResponse>"),
                          {"Connection": "close"}), _balance(GOOD))
    for _ in range(4):
        assert calls[1]().balance == Decimal("12.34")
    assert len(hostile.received("/iCloud.asmx")) == 4


def test_a_redirect_never_carries_the_envelope_elsewhere(hostile):
    """A 307 to another host: zeep/requests would re-send the whole envelope, key included."""
    with HostileServer() as elsewhere:
        elsewhere.script("/iCloud.asmx", _balance(GOOD))
        hostile.script("/iCloud.asmx", answer("307 Temporary Redirect", "",
                                              {"Location": f"{elsewhere.url}/iCloud.asmx"}))
        client = InhanceClient({"default": _endpoint(hostile), "MakePaymentExtended": _endpoint(hostile)}, timeout=5)
        with pytest.raises(HttpStatusError, match="redirect to 127.0.0.1 not followed") as raised:
            client.make_payment_extended("1001", datetime(2026, 3, 2, 10, tzinfo=UTC), "g", "7", "Credit Card",
                                         "10.00")
        assert not raised.value.retryable and not is_transport_error(raised.value)
        with pytest.raises(HttpStatusError):
            client.lean().balance_check("1001", 7)
        assert elsewhere.received() == []
        assert all(b"k3y" in r.body for r in hostile.received())  # the key went to the configured host only


def _endpoint(server: HostileServer):
    from icbridge.soap.cis import CisEndpoint

    return CisEndpoint(server.url + "/iCloud.asmx", "k3y")


def test_http_errors_are_retryable_for_reads_with_retry_after(hostile):
    hostile.script("/iCloud.asmx", answer("503 Service Unavailable", IIS_500.replace("500", "503"),
                                          {"Content-Type": "text/html", "Retry-After": "2"}), _balance(GOOD))
    client = InhanceClient.single(hostile.url + "/iCloud.asmx", "k3y", timeout=5)
    waits: list[float] = []
    policy = CallPolicy(in_flight=1, per_second=0, attempts=3, backoff_seconds=0.01)
    (outcome,) = call_all(["1001"], lambda a: client.balance_check(a, 7), policy, sleep=waits.append)
    assert outcome.ok and outcome.result.balance == Decimal("12.34") and outcome.attempts == 2
    assert waits == [2.0]  # Retry-After honoured
    hostile.script("/iCloud.asmx", answer("500 Internal Server Error", IIS_500, {"Content-Type": "text/html"}))
    with pytest.raises(LookupTransient, match="HTTP 500"):  # Balance All retries it, never calls it refused
        inhance_lookup(client.lean())("1001", "7")


def test_transport_failures_are_not_sent_or_no_answer(hostile):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = InhanceClient.single(f"http://127.0.0.1:{closed_port}/iCloud.asmx", "k", timeout=2)
    with pytest.raises(NotSent) as raised:
        refused.make_payment_extended("1001", datetime(2026, 3, 2, tzinfo=UTC), "g", "7", "ACH", "1.00")
    assert is_not_sent(raised.value)
    hostile.script("/iCloud.asmx", Drop())
    client = InhanceClient.single(hostile.url + "/iCloud.asmx", "k", timeout=2)
    with pytest.raises(NoAnswer) as dropped:
        client.make_payment_extended("1001", datetime(2026, 3, 2, tzinfo=UTC), "g", "7", "ACH", "1.00")
    assert not is_not_sent(dropped.value) and len(hostile.received()) == 1


def test_answers_over_the_cap_are_refused_naming_it_and_big_pdfs_pass(hostile):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 60_000  # ~15 MB: a base64 text node over lxml's 10 MB default
    import base64

    body = envelope(f'<RetrieveBillPrintImageV2Response xmlns="{TEMPURI}"><RetrieveBillPrintImageV2Result>'
                    "<ResponseCode>0</ResponseCode><PdfContent>" + base64.b64encode(pdf).decode()
                    + "</PdfContent></RetrieveBillPrintImageV2Result></RetrieveBillPrintImageV2Response>")
    hostile.script("/aus.asmx", answer("200 OK", body))
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=10)
    image = client.retrieve_bill_print_image("1001", "B1")
    assert image.ok and image.is_pdf and image.content == pdf
    small = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=10, max_answer_bytes=1 << 20)
    with pytest.raises(MalformedAnswer, match="max_answer_bytes = 1,048,576"):
        small.retrieve_bill_print_image("1001", "B1")


# AUS: flags and codes never guessed --------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    (f"<ResponseCode>0</ResponseCode><Balance>5</Balance><PastDue>0</PastDue><CashOnly {NIL}/>",
     (MissingValue, "CashOnly is required")),
    ("<ResponseCode>0</ResponseCode><Balance>5</Balance><PastDue>0</PastDue>", (MissingValue, "CashOnly")),
    ("<ResponseCode>0</ResponseCode><Balance>5</Balance><PastDue>0</PastDue><CashOnly>1</CashOnly>", True),
    ("<ResponseCode>1</ResponseCode><ResponseMessage>Account not found</ResponseMessage>", "not found"),
    (f"<ResponseCode {NIL}/><Balance>5</Balance><PastDue>0</PastDue><CashOnly>false</CashOnly>",
     (MissingValue, "ResponseCode is required")),
])
def test_aus_get_account_data_never_guesses_a_flag(hostile, fields, expected):
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    for call in (lambda: client.get_account_data("1001"), lambda: client.lean().get_account_data("1001")):
        hostile.script("/aus.asmx", method_answer("GetAccountData", fields))
        if isinstance(expected, tuple):
            with pytest.raises(expected[0], match=expected[1]):
                call()
        elif expected == "not found":
            assert call().not_found
        else:
            assert call().cash_only is expected
    hostile.script("/aus.asmx", method_answer("GetAccountData", fields))
    if isinstance(expected, tuple):  # Balance All: that account's error, never a value
        with pytest.raises(expected[0]):
            aus_lookup(client.lean())("1001", "7")


# money: refused, in doubt, never guessed ----------------------------------------------------------


MONEY_CASES = [
    ("empty Response", answer("200 OK", envelope(f'<MakePaymentExtendedResponse xmlns="{TEMPURI}"/>')),
     (MalformedAnswer, "outcome is unknown")),
    ("nil Success", method_answer("MakePaymentExtended", f"<Success {NIL}/>"), (MissingValue, "Success is required")),
    ("Success false",
     method_answer("MakePaymentExtended", "<Success>false</Success><ErrorMessage>Closed</ErrorMessage>"), "refused"),
    ("Success True", method_answer("MakePaymentExtended", "<Success>True</Success>"), "ok"),
    ("empty body 200", answer("200 OK", ""), (MalformedAnswer, "outcome is unknown")),
]


@pytest.mark.parametrize(("case", "raw", "expected"), MONEY_CASES, ids=[c[0] for c in MONEY_CASES])
def test_make_payment_answers(hostile, case, raw, expected):
    hostile.script("/iCloud.asmx", raw)
    client = InhanceClient.single(hostile.url + "/iCloud.asmx", "k", timeout=5)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]):
            make_payment(client)
    else:
        assert ("ok" if make_payment(client).ok else "refused") == expected


def test_add_pending_payment_nil_code_is_in_doubt_not_code_9(hostile):
    hostile.script("/aus.asmx", method_answer("AddPendingPayment",
                                     f"<ResponseCode {NIL}/><PendingPaymentID>P1</PendingPaymentID>"))
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    with pytest.raises(MissingValue, match="ResponseCode"):
        client.add_pending_payment("1001", datetime(2026, 3, 2, tzinfo=UTC), "10.00", "ACH", "g")


def _upload(fields: str | None) -> bytes:
    inner = "" if fields is None else f"<UploadInvoiceFileResult>{fields}</UploadInvoiceFileResult>"
    return answer("200 OK", envelope(f'<UploadInvoiceFileResponse xmlns="{IC_INV}">{inner}'
                                     "</UploadInvoiceFileResponse>"))


def test_upload_invoice_file_answers(hostile):
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    hostile.script("/CloudInvoicing.asmx", answer("500 Internal Server Error", envelope(
        "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Invalid file format</faultstring></soap:Fault>")))
    with pytest.raises(InvoiceCloudError, match="Invalid file format"):  # a refusal (the operator records it so)
        client.upload_invoice_file("x.BIF", b"x")
    hostile.script("/CloudInvoicing.asmx", _upload(None))
    with pytest.raises(MalformedAnswer, match="outcome is unknown"):  # IC may have taken it: in doubt
        client.upload_invoice_file("x.BIF", b"x")
    hostile.script("/CloudInvoicing.asmx", _upload("<Success>true</Success><FileID>F1</FileID>"))
    with pytest.raises(MissingValue, match="InvoicesAccepted"):
        client.upload_invoice_file("x.BIF", b"x")
    hostile.script("/CloudInvoicing.asmx", _upload(
        "<Success>false</Success><ErrorMessage>Duplicate</ErrorMessage><InvoicesAccepted>0</InvoicesAccepted>"
        "<InvoicesRejected>3</InvoicesRejected>"))
    result = client.upload_invoice_file("x.BIF", b"x")
    assert not result.success and result.error_message == "Duplicate"


# lists: nil items, missing values, .NET forms ----------------------------------------------------


def _payments(items: str) -> bytes:
    return answer("200 OK", envelope(f'<ListPaymentsResponse xmlns="{IC_PAY}"><ListPaymentsResult><Payments>{items}'
                                     "</Payments></ListPaymentsResult></ListPaymentsResponse>"))


def _payment(guid: str, account: str, amount: str | None = "25.00", date: str = "2026-03-02T10:05:00.1234567Z",
             extra: str = "") -> str:
    amount_xml = f"<PaymentAmount {NIL}/>" if amount is None else f"<PaymentAmount>{amount}</PaymentAmount>"
    return (f"<Payment>{extra}<PaymentGUID>{guid}</PaymentGUID><AccountNumber>{account}</AccountNumber>"
            f"<InvoiceNumber>7001</InvoiceNumber><PaymentDate>{date}</PaymentDate>{amount_xml}"
            "<ConvenienceFee>0</ConvenienceFee><PaymentType>ACH</PaymentType><Channel>Web</Channel></Payment>")


def test_list_payments_skips_nil_items_and_leaves_out_items_missing_values(hostile, caplog):
    reset_reports()
    hostile.script("/CloudPayments.asmx", _payments(
        f'<Payment {NIL}/>' + _payment("g1", "1001", extra="<RiskScore>3</RiskScore>")
        + _payment("g2", "55501002", amount=None) + f'<Payment {NIL}/>'))
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    with caplog.at_level(logging.WARNING):
        listed = client.list_payments(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    assert [p.payment_guid for p in listed] == ["g1"] and listed.nil_items == 2
    assert listed[0].payment_date == datetime(2026, 3, 2, 10, 5, 0, 123456, tzinfo=UTC)
    assert listed.invalid == ["invoice_cloud ListPayments: ListPaymentsResult.Payments.Payment.PaymentAmount is "
                              "required but was nil or absent (account ****1002)"]
    assert "unknown element RiskScore" in caplog.text and "null item(s)" in caplog.text


# through the flows: what reaches the other system -------------------------------------------------

def test_payments_flow_posts_only_what_ic_sent_whole(world_hostile):
    """A null item and a payment whose amount IC sent nil: neither reaches the CIS; the good one
    does, once; the run fails naming the bad one (no 0.00 payment, no 0001-01-01 date)."""
    from icbridge.flows.payments import run_payments
    from icbridge.flows.sync_common import Interval, SyncFailed

    world, hostile, biller = world_hostile
    hostile.script("/CloudPayments.asmx", _payments(
        f'<Payment {NIL}/>' + _payment("g-good", "1001") + _payment("g-nil", "55501002", amount=None)))
    ic = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    interval = Interval(T0, T0 + timedelta(minutes=15))
    with pytest.raises(SyncFailed, match=r"break the answer contract.*PaymentAmount.*\*\*\*\*1002"):
        run_payments(biller=biller, ic=ic, cis=vendor("inhance").service(world.client("inhance")), ledger=world.ledger,
                     interval=interval, run_id="h#1", policy=CallPolicy(in_flight=2, per_second=0))
    posted = world.inhance.payments("t_inhance")
    assert [(p["account_number"], p["amount"]) for p in posted] == [("1001", Decimal("25.00"))]
    assert world.ledger.get(biller.biller_id, "g-good").status == "posted"
    assert world.ledger.get(biller.biller_id, "g-nil") is None


def test_payments_flow_in_doubt_when_the_cis_answer_cannot_be_judged(world_hostile):
    from icbridge.flows.payments import run_payments
    from icbridge.flows.sync_common import Interval, SyncFailed
    from icbridge.soap.cis import DEFAULT, CisEndpoint

    world, hostile, biller = world_hostile
    guid = world.pay("1001")
    hostile.script("/pay/iCloud.asmx", method_answer("MakePaymentExtended", f"<Success {NIL}/>"))
    cis = InhanceClient({DEFAULT: CisEndpoint(world.inhance.endpoint_url("t_inhance"), world.keys["inhance"]),
                         "MakePaymentExtended": CisEndpoint(hostile.url + "/pay/iCloud.asmx", "k")}, timeout=5)
    with pytest.raises(SyncFailed):
        run_payments(biller=biller, ic=world.ic_client(), cis=vendor("inhance").service(cis), ledger=world.ledger,
                     interval=Interval(T0, T0 + timedelta(minutes=15)), run_id="h#2",
                     policy=CallPolicy(in_flight=2, per_second=0))
    row = world.ledger.get(biller.biller_id, guid)
    assert row.status == "in_doubt" and "Success is required" in row.message  # never "refused"
    assert len(hostile.received("/pay/iCloud.asmx")) == 1  # never re-sent blindly


def test_balances_flow_never_unblocks_on_a_cash_only_it_did_not_receive(world_hostile):
    """AUS answers ResponseCode 0 with CashOnly nil: IC's payment blocks stay as they were."""
    from icbridge.flows.balances import run_balances
    from icbridge.flows.sync_common import Interval, SyncFailed

    world, hostile, _ = world_hostile
    aus_biller = sync_biller("aus")
    world.ic.sim.add_customer(world.guid, "1001", block_payments_cc=True, block_payments_eft=True)
    world.ic.sim.add_change(world.guid, "1001", "Phone", "555", T0 + timedelta(minutes=1))
    hostile.script("/aus.asmx", method_answer("GetAccountData", "<ResponseCode>0</ResponseCode><Balance>5.00</Balance>"
                                                       f"<PastDue>0</PastDue><CashOnly {NIL}/>"))
    cis = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    with pytest.raises(SyncFailed):
        run_balances(biller=aus_biller, ic=world.ic_client(), cis=vendor("aus").service(cis),
                     interval=Interval(T0, T0 + timedelta(minutes=15)),
                     policy=CallPolicy(in_flight=2, per_second=0, attempts=1), ledger=world.ledger)
    record = next(c for c in world.ic.sim.customers(world.guid) if c["account_number"] == "1001")
    assert record["block_payments_cc"] and record["block_payments_eft"]
    assert next(i for i in world.ic.sim.invoices(world.guid) if i["invoice_number"] == "7001")["balance_due"] \
        == Decimal("100.00")


def test_an_egress_proxy_per_connection_carries_the_call(hostile):
    """extra ``proxy``: the call goes to the proxy (absolute-form request line), not to the endpoint."""
    with HostileServer() as endpoint:
        target = f"{endpoint.url}/iCloud.asmx"
        hostile.script(target, _balance(GOOD))
        client = InhanceClient.single(target, "k3y", timeout=5, proxy=hostile.url)
        assert client.lean().balance_check("1001", 7).balance == Decimal("12.34")
        assert client.balance_check("1001", 7).balance == Decimal("12.34")
        assert [r.path for r in hostile.received()] == [target, target] and endpoint.received() == []


def test_the_documented_contract_is_the_code_s():
    from pathlib import Path

    from icbridge.soap.catalogue import contract_table

    doc = (Path(__file__).resolve().parents[3] / "docs" / "cis-services.md").read_text()
    documented = doc.split("<!-- contract-table:start -->\n")[1].split("<!-- contract-table:end -->")[0]
    assert documented == contract_table()
    assert "| `ListPaymentsResult.Payments.Payment[].PaymentAmount` | decimal | yes |" in documented


def test_payment_export_builds_no_file_missing_a_payment(hostile):
    from datetime import date
    from zoneinfo import ZoneInfo

    from icbridge.flows.payment_export import export_day

    when = "2026-03-02T15:00:00-05:00"
    hostile.script("/CloudPayments.asmx", _payments(
        _payment("g1", "1001", date=when, extra="").replace("<Channel>Web</Channel>", "<Channel>CloudPay</Channel>")
        + _payment("g2", "55501002", amount=None, date=when)))
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    with pytest.raises(ValueError, match=r"break the answer contract.*\*\*\*\*1002"):
        export_day(client.list_payments, bid="123", day=date(2026, 3, 2), tz=ZoneInfo("America/New_York"))


def test_keep_alive_survives_more_than_1024_open_files(hostile):
    """select() cannot watch a descriptor above 1023; the transport must still reuse connections."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the hard limit of open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    held = [socket.socket() for _ in range(1100)]
    try:
        hostile.script("/iCloud.asmx", _balance(GOOD))
        client = InhanceClient.single(hostile.url + "/iCloud.asmx", "k", timeout=5).lean()
        for _ in range(5):
            assert client.balance_check("1001", 7).balance == Decimal("12.34")
        assert hostile.connections == 1  # one keep-alive connection, reused
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_dotnet_value_forms_are_read_as_the_vendors_clients_read_them(hostile):
    """A .NET DateTime where the WSDL says xs:date (its date part), a long where int is
    declared, booleans as 1/0 — on both renderings of ListOpenInvoices (Balance All's pages)."""
    from datetime import date

    invoice = ("<Invoice><AccountNumber>55501002</AccountNumber><InvoiceNumber>7002</InvoiceNumber>"
               "<InvoiceDate>2026-11-01T00:00:00-05:00</InvoiceDate><DueDate>2026-11-28T00:00:00</DueDate>"
               "<TotalAmountDue>100.00</TotalAmountDue><BalanceDue>40.5</BalanceDue>"
               "<BlockPaymentsCC>1</BlockPaymentsCC><BlockPaymentsEFT xsi:nil=\"true\"/></Invoice>")
    body = answer("200 OK", envelope(
        f'<ListOpenInvoicesResponse xmlns="{IC_INV}"><ListOpenInvoicesResult><Invoices>{invoice}</Invoices>'
        "<TotalCount>5000000000</TotalCount></ListOpenInvoicesResult></ListOpenInvoicesResponse>"))
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    pages = []
    for call in (lambda: client.list_open_invoices(1, 500), lambda: client.lean().list_open_invoices(1, 500)):
        hostile.script("/CloudInvoicing.asmx", body)
        pages.append(call())
    assert pages[0] == pages[1]
    (only,) = pages[0].invoices
    assert only.invoice_date == date(2026, 11, 1) and only.due_date == date(2026, 11, 28)
    assert only.balance_due == Decimal("40.5") and only.block_payments_cc is True and only.block_payments_eft is None
    assert pages[0].total_count == 5_000_000_000


@pytest.mark.parametrize("kind", ["payment", "upload"])
def test_a_trickled_answer_to_a_money_call_ends_at_its_deadline_in_doubt(hostile, kind):
    """Issue 22 item 3: a server that trickles a well-formed success (16 bytes every 0.4 s, ~15 s
    in all) must not hold a money call open past its timeout (1.5 s + the 0.5 s margin), and
    what it trickled is not a success: sent, no answer (in doubt), never not-sent."""
    import time

    if kind == "payment":
        hostile.script("/iCloud.asmx", Trickle(method_answer("MakePaymentExtended", "<Success>true</Success>"), 0.4))
        client = InhanceClient.single(hostile.url + "/iCloud.asmx", "k", timeout=1.5)
        call = lambda: make_payment(client)  # noqa: E731
    else:
        hostile.script("/CloudInvoicing.asmx", Trickle(_upload("<Success>true</Success><FileID>F1</FileID>"
                                                               "<InvoicesAccepted>1</InvoicesAccepted>"), 0.4))
        client = InvoiceCloudClient(hostile.url, "guid", "key", timeout=1.5)
        call = lambda: client.upload_invoice_file("X.BIF", b"FH\r\n")  # noqa: E731
    start = time.monotonic()
    with pytest.raises(AnswerTimeout, match="the call's deadline") as raised:
        call()
    took = time.monotonic() - start
    assert took < 3.0, took
    assert not is_not_sent(raised.value) and len(hostile.received()) == 1
