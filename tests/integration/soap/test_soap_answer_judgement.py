"""How an odd SOAP answer is judged: duplicated or doubled elements, values in no XSD form, an
empty list, a gateway's fault, an interim answer, two bodies: answers real IIS/ASP.NET services,
gateways and proxies may send, through the hostile raw-bytes server. Each one is malformed, in
doubt or a transport error, never a value, a refusal or zero items (each test failed before its
fix; they came from a branch review)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from icbridge.calls import CallPolicy
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import DEFAULT, CisEndpoint, CisFault
from icbridge.soap.errors import (
    CredentialsRefused,
    HttpStatusError,
    MalformedAnswer,
    NoAnswer,
    is_credentials_refusal,
)
from icbridge.soap.inhance import InhanceClient
from icbridge.soap.invoice_cloud import InvoiceCloudClient
from icbridge.vendors import vendor
from tests.support.hostile_http import Interim, answer, envelope
from tests.support.soap_answers import IC_PAY, TEMPURI, make_payment, method_answer
from tests.support.sync_world import T0

FAULT = "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>{}</faultstring></soap:Fault>"
ASMX_UNAUTHORIZED_ACCESS = (
    "System.Web.Services.Protocols.SoapException: Server was unable to process request. ---&gt; "
    "System.UnauthorizedAccessException: Access to the path 'D:\\iCloud\\logs\\payments.log' is denied."
)


def _inhance(server) -> InhanceClient:
    return InhanceClient.single(server.url + "/iCloud.asmx", "k", timeout=5)


# 1. duplicate elements: the last one decided a payment ------------------------------------------


@pytest.mark.parametrize("fields", [
    "<Success>false</Success><Success>true</Success>",
    "<Success>true</Success><Success>false</Success>",
])
def test_a_duplicated_success_is_an_answer_that_cannot_be_judged(hostile, fields):
    hostile.script("/iCloud.asmx", method_answer("MakePaymentExtended", fields))
    with pytest.raises(MalformedAnswer, match="Success"):
        make_payment(_inhance(hostile))


def test_a_duplicated_response_code_never_posts_a_refused_payment(hostile):
    hostile.script("/aus.asmx", method_answer("AddPendingPayment", "<ResponseCode>3</ResponseCode><ResponseMessage>"
                                     "Invalid request</ResponseMessage><ResponseCode>0</ResponseCode>"))
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    with pytest.raises(MalformedAnswer, match="ResponseCode"):
        client.add_pending_payment("1001", datetime(2026, 3, 2, tzinfo=UTC), "10.00", "ACH", "g")


def test_two_results_in_one_response_cannot_be_judged(hostile):
    result = "<MakePaymentExtendedResult><Success>{}</Success></MakePaymentExtendedResult>"
    hostile.script("/iCloud.asmx", answer("200 OK", envelope(
        f'<MakePaymentExtendedResponse xmlns="{TEMPURI}">{result.format("false")}{result.format("true")}'
        "</MakePaymentExtendedResponse>")))
    with pytest.raises(MalformedAnswer):
        make_payment(_inhance(hostile))


# 2. a .NET exception name in a fault is not a key refusal (a payment marked resend) --------------


@pytest.mark.parametrize("text", [
    ASMX_UNAUTHORIZED_ACCESS.replace("&gt;", ">"),
    "System.Security.Authentication.AuthenticationException: A call to SSPI failed",
])
def test_dotnet_exception_names_are_not_credential_refusals(text):
    assert not is_credentials_refusal(text)
    assert is_credentials_refusal("Invalid credentials")
    assert is_credentials_refusal("Server was unable to process request. ---> Authentication failed")
    assert is_credentials_refusal("Unauthorized")


def test_a_fault_after_processing_is_never_resent_automatically(world_hostile):
    """ASMX answers an exception thrown after the payment was applied (its log file not
    writable) as a fault naming ``System.UnauthorizedAccessException``: the payment may be in
    the CIS; it must not be marked ``resend`` (the next run would post it again)."""
    from icbridge.flows.payments import run_payments
    from icbridge.flows.sync_common import Interval, SyncFailed

    world, hostile, biller = world_hostile
    guid = world.pay("1001")
    hostile.script("/pay/iCloud.asmx", answer("500 Internal Server Error", envelope(
        FAULT.format(ASMX_UNAUTHORIZED_ACCESS))))
    cis = InhanceClient({DEFAULT: CisEndpoint(world.inhance.endpoint_url("t_inhance"), world.keys["inhance"]),
                         "MakePaymentExtended": CisEndpoint(hostile.url + "/pay/iCloud.asmx", "k")}, timeout=5)
    with pytest.raises(SyncFailed):
        run_payments(biller=biller, ic=world.ic_client(), cis=vendor("inhance").service(cis), ledger=world.ledger,
                     interval=Interval(T0, T0 + timedelta(minutes=15)), run_id="r#1",
                     policy=CallPolicy(in_flight=1, per_second=0))
    assert world.ledger.get(biller.biller_id, guid).status != "resend"


# 3. a gateway's SOAP fault on a 502/504 is not the CIS refusing ---------------------------------


@pytest.mark.parametrize("status", ["502 Bad Gateway", "504 Gateway Timeout"])
def test_a_gateway_fault_is_not_a_refusal(hostile, status):
    """An API gateway in front of the .asmx (it answers 504 with a SOAP fault when the service
    did not answer in time): the service may have applied the payment — not ``refused``."""
    hostile.script("/iCloud.asmx", answer(status, envelope(FAULT.format("Backend service did not respond"))))
    with pytest.raises(HttpStatusError) as raised:
        make_payment(_inhance(hostile))
    assert not isinstance(raised.value, CisFault) and raised.value.retryable
    assert "Backend service did not respond" in str(raised.value)


# 4. numbers in forms no .NET service writes ------------------------------------------------------


@pytest.mark.parametrize("code", ["\u0660", "0_0", "\uff10"])  # Arabic-Indic zero, underscore, full-width zero
def test_a_response_code_in_no_xsd_form_is_malformed(hostile, code):
    hostile.script("/aus.asmx", method_answer("AddPendingPayment", f"<ResponseCode>{code}</ResponseCode>"))
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    with pytest.raises(MalformedAnswer, match="is not a int"):
        client.add_pending_payment("1001", datetime(2026, 3, 2, tzinfo=UTC), "10.00", "ACH", "g")


@pytest.mark.parametrize("amount", ["1E3", "1_000.00", "\u0661\u0660.00"])
def test_a_decimal_in_no_xsd_form_is_malformed(hostile, amount):
    hostile.script("/iCloud.asmx", method_answer("BalanceCheck", f"<Balance>{amount}</Balance><FutureBalance>1.00"
                                                        "</FutureBalance><Success>true</Success>"))
    with pytest.raises(MalformedAnswer, match="Balance"):
        _inhance(hostile).balance_check("1001", 7)


def test_xsd_decimal_forms_still_read():
    from icbridge.soap.contract import CONVERTERS

    for text, value in (("12.34", "12.34"), ("-0.5", "-0.5"), ("+7", "7"), (".5", "0.5"), ("5.", "5"),
                        (" 1.00\n", "1.00")):
        assert CONVERTERS["decimal"](text) == Decimal(value)
    assert CONVERTERS["int"](" -12 ") == -12 and CONVERTERS["long"]("+3") == 3


# 5. header values that escaped as ValueError (money operators call a ValueError "invalid") ------


def test_a_retry_after_in_no_form_is_ignored(hostile):
    raw = answer("503 Service Unavailable", "<html><title>busy</title></html>",
                 {"Content-Type": "text/html", "Retry-After": "\u00b2"})
    hostile.script("/iCloud.asmx", raw)
    with pytest.raises(HttpStatusError) as raised:
        make_payment(_inhance(hostile))
    assert raised.value.retry_after is None


def test_a_redirect_to_an_unparseable_location_is_an_http_error(hostile):
    hostile.script("/iCloud.asmx", answer("302 Found", "", {"Location": "http://[login.example/"}))
    with pytest.raises(HttpStatusError, match="302"):
        make_payment(_inhance(hostile))


def test_credentials_fault_still_refused_at_once(hostile):
    hostile.script("/iCloud.asmx", answer("500 Internal Server Error", envelope(FAULT.format("Invalid credentials"))))
    with pytest.raises(CredentialsRefused):
        make_payment(_inhance(hostile))


def test_a_content_length_in_no_form_is_not_a_value_error(hostile):
    """``Content-Length: ²`` (str.isdigit() is true, int() refuses it) on a payment: the request
    was sent; the error must be a transport/answer error, not a ValueError (which the money
    operators record as "invalid", i.e. never sent)."""
    body = method_answer("MakePaymentExtended", "<Success>true</Success>").split(b"\r\n\r\n", 1)[1]
    raw = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: \xb2\r\n"
           b"Connection: close\r\n\r\n" + body)
    hostile.script("/iCloud.asmx", raw)
    try:
        result = make_payment(_inhance(hostile))
    except ValueError as exc:  # noqa: PT017
        pytest.fail(f"ValueError escaped: {exc!r}")
    except Exception:  # noqa: BLE001, S110 - any answer or transport error is acceptable
        pass
    else:
        assert result.ok


# 6. an empty answer to a listing is not "nothing listed" ----------------------------------------

EMPTY_LIST_ANSWERS = [
    answer("200 OK", ""),  # a proxy's / WAF's empty 200
    answer("200 OK", envelope(f'<ListPaymentsResponse xmlns="{IC_PAY}"/>')),  # the method returned null
    answer("200 OK", envelope(f'<ListPaymentsResponse xmlns="{IC_PAY}"><ListPaymentsResult xsi:nil="true"/>'
                              "</ListPaymentsResponse>")),
]


@pytest.mark.parametrize("raw", EMPTY_LIST_ANSWERS, ids=["empty body", "no Result", "nil Result"])
def test_an_empty_list_payments_answer_is_not_zero_payments(hostile, raw):
    """A run that read "no payments" from an answer that said nothing moves its watermark past
    IC's payments: they never reach the CIS."""
    hostile.script("/CloudPayments.asmx", raw)
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    with pytest.raises(MalformedAnswer, match="empty answer"):
        client.list_payments(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


def test_an_empty_list_change_log_answer_is_not_zero_changes(hostile):
    hostile.script("/CloudManagement.asmx", answer("200 OK", ""))
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    with pytest.raises(MalformedAnswer, match="empty answer"):
        client.list_change_log(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


def test_an_empty_open_invoices_page_is_not_the_end_of_the_list(hostile):
    hostile.script("/CloudInvoicing.asmx", answer("200 OK", ""))
    client = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    for call in (lambda: client.list_open_invoices(2, 500), lambda: client.lean().list_open_invoices(2)):
        with pytest.raises(MalformedAnswer, match="empty answer"):
            call()


def test_payments_run_fails_on_an_empty_listing_and_posts_nothing(world_hostile):
    from icbridge.flows.payments import run_payments
    from icbridge.flows.sync_common import Interval

    world, hostile, biller = world_hostile
    hostile.script("/CloudPayments.asmx", answer("200 OK", ""))
    ic = InvoiceCloudClient(hostile.url, "guid", "k", timeout=5)
    with pytest.raises(MalformedAnswer):
        run_payments(biller=biller, ic=ic, cis=vendor("inhance").service(world.client("inhance")), ledger=world.ledger,
                     interval=Interval(T0, T0 + timedelta(minutes=15)), run_id="e#1",
                     policy=CallPolicy(in_flight=1, per_second=0))


# 7. a fault beside a Response: not a fault message -----------------------------------------------


@pytest.mark.parametrize("order", ["response first", "fault first"])
def test_a_fault_beside_a_response_cannot_be_judged(hostile, order):
    """SOAP 1.2: a fault message has the Fault as the Body's only child; SOAP 1.1: one Fault,
    as a body entry. A Body with ``Success=true`` and a Fault says both things: in doubt for a
    payment, never "refused"."""
    response = (f'<MakePaymentExtendedResponse xmlns="{TEMPURI}"><MakePaymentExtendedResult>'
                "<Success>true</Success></MakePaymentExtendedResult></MakePaymentExtendedResponse>")
    fault = FAULT.format("Object reference not set to an instance of an object.")
    inner = response + fault if order == "response first" else fault + response
    hostile.script("/iCloud.asmx", answer("500 Internal Server Error", envelope(inner)))
    with pytest.raises(MalformedAnswer, match="Fault"):
        make_payment(_inhance(hostile))


# 8. an interim 1xx (not 100) was taken as the answer; the real one answered the next call ------


def test_an_interim_answer_never_answers_the_next_payment(hostile):
    """``102 Processing`` (or ``103 Early Hints`` from a proxy) then, later, the real answer:
    http.client ignores only 100. The 102 came back as the answer and the connection went back
    to the pool with payment A's ``Success=true`` still on its way — payment B, sent on it, was
    judged by A's answer (posted) and its own answer waited for payment C."""
    ok_a = method_answer("MakePaymentExtended", "<Success>true</Success><ErrorMessage>A</ErrorMessage>")
    refused_b = method_answer("MakePaymentExtended", "<Success>false</Success><ErrorMessage>B</ErrorMessage>")
    hostile.script("/iCloud.asmx", Interim(b"HTTP/1.1 102 Processing\r\n\r\n", 0.3, ok_a), refused_b)
    client = _inhance(hostile)
    with pytest.raises(NoAnswer):  # A: sent, no final answer read: in doubt
        make_payment(client)
    b = make_payment(client)
    assert (b.ok, b.message) == (False, "B")


# 9. an envelope with two Bodies; a value cut by a child node -------------------------------------


def test_two_bodies_cannot_be_judged(hostile):
    """One Body per envelope (SOAP 1.1/1.2): the first one decided (``Success=false``: refused)."""
    result = (f'<soap:Body><MakePaymentExtendedResponse xmlns="{TEMPURI}"><MakePaymentExtendedResult><Success>{{}}'
              "</Success></MakePaymentExtendedResult></MakePaymentExtendedResponse></soap:Body>")
    two = envelope("").replace("<soap:Body></soap:Body>", result.format("false") + result.format("true"))
    hostile.script("/iCloud.asmx", answer("200 OK", two))
    with pytest.raises(MalformedAnswer, match="Body"):
        make_payment(_inhance(hostile))


@pytest.mark.parametrize("amount", ["1<?x y?>000.00", "1<b/>000.00"])
def test_a_value_with_a_child_node_is_malformed_not_its_first_text(hostile, amount):
    """``<Balance>1<?x?>000.00</Balance>`` read as 1 (lxml's ``.text`` stops at the first child)."""
    hostile.script("/iCloud.asmx", method_answer("BalanceCheck", f"<Balance>{amount}</Balance><FutureBalance>1.00"
                                                        "</FutureBalance><Success>true</Success>"))
    with pytest.raises(MalformedAnswer, match="Balance"):
        _inhance(hostile).balance_check("1001", 7)
