"""Invoice Cloud SOAP: contract, client, hook and simulator, over real HTTP (no mocks).

zeep (through icbridge.soap) talks to the simulator on 127.0.0.1; hostile and slow
responses come from tiny WSGI apps mounted on the same kind of server.
"""

from __future__ import annotations

import logging
import pickle
import secrets
import threading
import time
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep.exceptions

from icbridge.layouts.bif import check_bif, encode_row, registry
from icbridge.soap.client import make_client, redact_soap, soap_text
from icbridge.soap.errors import CredentialsRefused, MalformedAnswer
from icbridge.soap.invoice_cloud import (
    WSDL_DIR,
    InvoiceCloudClient,
    InvoiceCloudError,
    OperationResult,
)
from icbsim.invoice_cloud import INVALID_CREDENTIALS
from icbsim.soapserver import SoapFault, SoapServer
from tests.support.ic_sim import IcSim

IC_NS = "https://www.invoicecloud.com/portal/webservices/{}/"

# ---------------------------------------------------------------------------------------------
# helpers


def make_bif(biller_guid: str, invoices: list[dict[str, str]]) -> bytes:
    """A BIF built from the field registry: invoices are dicts of IH/CR field values."""
    layouts = registry()

    def row(row_type: str, **values: str) -> list[str]:
        out = layouts[row_type].blank()
        for name, value in values.items():
            out[layouts[row_type].index(name)] = value
        return out

    total = sum(Decimal(i["TotalAmountDue"]) for i in invoices)
    rows = [
        row(
            "FH",
            BillerGuid=biller_guid,
            FileCreationDate="11/25/2026",
            InvoiceCount=str(len(invoices)),
            TotalInvoiceAmount=f"{total:.2f}",
        )
    ]
    for inv in invoices:
        rows.append(
            row(
                "IH",
                RecordType="R",
                InvoiceFormatGuid="6f1d2c3b-0000-4000-8000-000000000001",
                InvoiceNumber=inv["InvoiceNumber"],
                InvoiceDate=inv.get("InvoiceDate", "11/01/2026"),
                InvoiceDueDate=inv.get("InvoiceDueDate", "12/01/2026"),
                TotalAmountDue=inv["TotalAmountDue"],
                BalanceDue=inv.get("BalanceDue", inv["TotalAmountDue"]),
                AllowPartialPayments="1",
                InvoiceTypeID="1",
            )
        )
        rows.append(
            row(
                "CR",
                AccountNumber=inv["AccountNumber"],
                CustomerName=inv.get("CustomerName", 'John "Bud" Jones, Jr'),
                EmailAddress=inv.get("EmailAddress", ""),
                Phone=inv.get("Phone", ""),
                BlockCreditCard=inv.get("BlockCreditCard", "0"),
                BlockACH=inv.get("BlockACH", "0"),
            )
        )
        rows.append(row("ID", Description="Water", LineItemTotal=inv["TotalAmountDue"]))
    return "".join(encode_row(r) for r in rows).encode("utf-8")


TWO_INVOICES = [
    {"AccountNumber": "100000-75", "InvoiceNumber": "B1001", "TotalAmountDue": "562.28", "BlockCreditCard": "1"},
    {"AccountNumber": "100001-76", "InvoiceNumber": "B1002", "TotalAmountDue": "0.00", "EmailAddress": "a@b.org"},
]


def wrong_key_client(ic_sim: IcSim) -> InvoiceCloudClient:
    return InvoiceCloudClient(ic_sim.base_url, ic_sim.biller_guid, "not-the-key", timeout=10)


def raw_post(url: str, body: bytes, soap12: bool = False) -> requests.Response:
    content_type = "application/soap+xml; charset=utf-8" if soap12 else "text/xml; charset=utf-8"
    session = requests.Session()
    session.trust_env = False
    return session.post(url, data=body, headers={"Content-Type": content_type}, timeout=10)


# ---------------------------------------------------------------------------------------------
# the contract: every IC method of web-services.md with exactly its fields

CONTRACT: dict[tuple[str, str], tuple[list[str], list[str]]] = {
    ("CloudInvoicing", "UploadInvoiceFile"): (
        ["FileName", "FileContent"],
        ["Success", "ErrorMessage", "FileID", "InvoicesAccepted", "InvoicesRejected"],
    ),
    ("CloudInvoicing", "ViewInvoiceByInvoiceNumber"): (
        ["InvoiceNumber"],
        ["AccountNumber", "InvoiceNumber", "InvoiceDate", "DueDate", "TotalAmountDue", "BalanceDue"],
    ),
    ("CloudInvoicing", "ListOpenInvoices"): (["PageNumber", "PageSize"], ["Invoices", "TotalCount"]),
    ("CloudInvoicing", "UpdateInvoiceBalance"): (
        ["AccountNumber", "InvoiceNumber", "BalanceDue", "TotalAmountDue"],
        ["Success", "ErrorMessage"],
    ),
    ("CloudManagement", "ViewCustomerRecord"): (
        ["AccountNumber"],
        [
            "AccountNumber",
            "CustomerName",
            "EmailAddress",
            "Phone",
            "BlockPaymentsCC",
            "BlockPaymentsEFT",
            "Paperless",
            "AutoPay",
        ],
    ),
    ("CloudManagement", "UpdateCustomerRecord"): (
        ["AccountNumber", "EmailAddress", "Phone", "BlockPaymentsCC", "BlockPaymentsEFT", "Paperless", "AutoPay"],
        ["Success", "ErrorMessage"],
    ),
    ("CloudManagement", "ListChangeLog"): (["FromDate", "ToDate"], ["Changes"]),
    ("CloudPayments", "ListPayments"): (["FromDate", "ToDate", "Channel"], ["Payments"]),
}
ITEMS = {
    "Invoices": (  # OpenInvoice: Invoice + the account's payment blocks (ASSUMED, Balance All at scale)
        "Invoice",
        [
            "AccountNumber",
            "InvoiceNumber",
            "InvoiceDate",
            "DueDate",
            "TotalAmountDue",
            "BalanceDue",
            "BlockPaymentsCC",
            "BlockPaymentsEFT",
        ],
    ),
    "Changes": ("ChangeLogEntry", ["AccountNumber", "ChangeType", "NewValue", "ChangedAt"]),
    "Payments": (
        "Payment",
        [
            "PaymentGUID",
            "AccountNumber",
            "InvoiceNumber",
            "PaymentDate",
            "PaymentAmount",
            "ConvenienceFee",
            "PaymentType",
            "Channel",
            "CashierName",
        ],
    ),
}
XSD_TYPES = {
    "FileContent": "base64Binary",
    "TotalAmountDue": "decimal",
    "BalanceDue": "decimal",
    "PaymentAmount": "decimal",
    "ConvenienceFee": "decimal",
    "InvoiceDate": "date",
    "DueDate": "date",
    "FromDate": "dateTime",
    "ToDate": "dateTime",
    "PaymentDate": "dateTime",
    "ChangedAt": "dateTime",
    "Success": "boolean",
    "BlockPaymentsCC": "boolean",
    "BlockPaymentsEFT": "boolean",
    "Paperless": "boolean",
    "AutoPay": "boolean",
    "PageNumber": "int",
    "PageSize": "int",
    "TotalCount": "int",
}


def _fields(xsd_type: Any) -> dict[str, Any]:
    return dict(xsd_type.elements)


def _check_types(fields: dict[str, Any]) -> None:
    for name, element in fields.items():
        if name in XSD_TYPES:
            assert element.type.qname.localname == XSD_TYPES[name], name


@pytest.mark.parametrize(("service", "operation"), sorted(CONTRACT))
def test_wsdl_has_every_ic_method_with_exactly_its_fields(service: str, operation: str) -> None:
    client = make_client(WSDL_DIR / f"{service}.wsdl", "http://127.0.0.1:9/unused")
    ns = IC_NS.format(service)
    assert client.wsdl.types.prefix_map  # parsed
    in_fields, out_fields = CONTRACT[(service, operation)]
    for binding_name in (f"{service}Soap", f"{service}Soap12"):
        binding = client.wsdl.bindings[f"{{{ns}}}{binding_name}"]
        op = binding.get(operation)
        assert op.soapaction == ns + operation
        request = _fields(op.input.body.type)
        assert list(request) == ["BillerGUID", "WebServiceKey", *in_fields]
        _check_types(request)
        assert op.output.body.qname.localname == f"{operation}Response"
        (result_name, result_element), *rest = op.output.body.type.elements
        assert not rest and result_name == f"{operation}Result"
        result = _fields(result_element.type)
        assert list(result) == out_fields
        _check_types(result)
        for name in out_fields:
            if name in ITEMS:
                item_name, item_fields = ITEMS[name]
                (array_item, item_element), *more = result[name].type.elements
                assert not more and array_item == item_name
                assert list(_fields(item_element.type)) == item_fields
                _check_types(_fields(item_element.type))


def test_every_ic_method_is_in_the_contract() -> None:
    """No operation in the WSDLs that the spec table does not have, and none missing."""
    found = set()
    for service in ("CloudInvoicing", "CloudManagement", "CloudPayments"):
        client = make_client(WSDL_DIR / f"{service}.wsdl", "http://127.0.0.1:9/unused")
        assert {b.name.localname for b in client.wsdl.bindings.values()} == {f"{service}Soap", f"{service}Soap12"}
        for binding in client.wsdl.bindings.values():
            found |= {(service, name) for name in binding._operations}
    assert found == set(CONTRACT)


# ---------------------------------------------------------------------------------------------
# client factory


def test_make_client_is_hardened_cached_and_bound_to_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    wsdl = WSDL_DIR / "CloudInvoicing.wsdl"
    a = make_client(wsdl, "http://127.0.0.1:9/a.asmx", timeout=7, ca_file="/tmp/ca.pem", pool_maxsize=3)
    assert make_client(str(wsdl), "http://127.0.0.1:9/a.asmx", timeout=7, ca_file="/tmp/ca.pem", pool_maxsize=3) is a
    b = make_client(wsdl, "http://127.0.0.1:9/b.asmx")
    assert b is not a and b.wsdl is a.wsdl  # one parse of the WSDL per process
    s = a.settings
    assert (s.strict, s.forbid_dtd, s.forbid_entities, s.forbid_external, s.xml_huge_tree) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert a.transport.operation_timeout == 7 and a.transport.load_timeout == 7
    session = a.transport.session
    assert session.trust_env is False
    assert session.verify == "/tmp/ca.pem"
    assert session.get_adapter("https://x")._pool_maxsize == 3
    assert a.service._binding_options["address"] == "http://127.0.0.1:9/a.asmx"
    assert "invoicecloud.com" not in a.service._binding_options["address"]
    # the machine's CA bundle variables must not override verify (trust_env=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/bundle.pem")
    b_session = b.transport.session
    assert b_session.verify is True
    merged = b_session.merge_environment_settings("https://example.invalid/", {}, None, None, None)
    assert merged["verify"] is True


def test_make_client_soap12_binding_round_trip(ic_sim: IcSim) -> None:
    ic_sim.sim.add_invoice(ic_sim.biller_guid, "A-1", "INV-1", "12.50")
    client = make_client(
        WSDL_DIR / "CloudInvoicing.wsdl",
        ic_sim.base_url + "/CloudInvoicing.asmx",
        binding="CloudInvoicingSoap12",
        timeout=10,
    )
    page = client.service.ListOpenInvoices(
        BillerGUID=ic_sim.biller_guid, WebServiceKey=ic_sim.web_service_key, PageNumber=1, PageSize=10
    )
    assert page.TotalCount == 1 and page.Invoices.Invoice[0].BalanceDue == Decimal("12.50")
    with pytest.raises(zeep.exceptions.Fault, match=INVALID_CREDENTIALS):
        client.service.ListOpenInvoices(BillerGUID=ic_sim.biller_guid, WebServiceKey="x", PageNumber=1, PageSize=1)


def test_soap_text_treats_none_and_empty_alike() -> None:
    assert soap_text(None) == "" and soap_text("") == "" and soap_text("x") == "x" and soap_text(0) == "0"


def test_wsdl_is_served_with_the_servers_own_address(ic_sim: IcSim) -> None:
    url = ic_sim.base_url + "/CloudManagement.asmx"
    text = requests.get(url + "?WSDL", timeout=10).text
    assert f'location="{url}"' in text and "www.invoicecloud.com/portal/webservices/CloudManagement.asmx" not in text
    # zeep can load the served WSDL too (over HTTP, hardened)
    client = make_client(url + "?WSDL", url, timeout=10)
    assert (
        client.service.ViewCustomerRecord(
            BillerGUID=ic_sim.biller_guid, WebServiceKey=ic_sim.web_service_key, AccountNumber="none"
        )
        is None
    )
    assert requests.get(ic_sim.server.url + "/nope.asmx?WSDL", timeout=10).status_code == 404


# ---------------------------------------------------------------------------------------------
# every IC method round-trips through zeep and the simulator


def test_upload_and_view_invoices(ic_sim: IcSim) -> None:
    client = ic_sim.client(timeout=10)
    data = make_bif(ic_sim.biller_guid, TWO_INVOICES)
    assert check_bif(data, "UB_20261125.BIF") == []
    result = client.upload_invoice_file("UB_20261125.BIF", data)
    assert result.success and result.error_message == ""
    assert result.invoices_accepted == 2 and result.invoices_rejected == 0
    assert uuid.UUID(result.file_id)

    stored = ic_sim.sim.invoices(ic_sim.biller_guid)
    assert [(i["account_number"], i["invoice_number"], i["balance_due"]) for i in stored] == [
        ("100000-75", "B1001", Decimal("562.28")),
        ("100001-76", "B1002", Decimal("0.00")),
    ]
    assert stored[0]["block_credit_card"] is True and stored[0]["file_id"] == result.file_id
    (upload,) = ic_sim.sim.uploads(ic_sim.biller_guid)
    assert upload["success"] and upload["content"] == data and upload["invoices"] == 2

    invoice = client.view_invoice_by_invoice_number("B1001")
    assert invoice is not None
    assert invoice.account_number == "100000-75"
    assert (invoice.invoice_date, invoice.due_date) == (date(2026, 11, 1), date(2026, 12, 1))
    assert invoice.total_amount_due == invoice.balance_due == Decimal("562.28")
    assert client.view_invoice_by_invoice_number("NO-SUCH") is None

    customer = client.view_customer_record("100000-75")
    assert customer is not None and customer.customer_name == 'John "Bud" Jones, Jr'
    assert customer.block_payments_cc is True and customer.block_payments_eft is False


def test_list_open_invoices_pages(ic_sim: IcSim) -> None:
    sim, guid = ic_sim.sim, ic_sim.biller_guid
    for n in range(5):
        sim.add_invoice(guid, f"A{n}", f"INV{n}", "10.00")
    sim.add_invoice(guid, "A9", "PAID", "10.00", "0")
    sim.add_invoice(guid, "A8", "CREDIT", "10.00", "-3.25")  # a credit is open too
    client = ic_sim.client(timeout=10)
    page = client.list_open_invoices(1, 2)
    assert page.total_count == 6 and [i.invoice_number for i in page.invoices] == ["INV0", "INV1"]
    assert [i.invoice_number for i in client.list_open_invoices(4, 2).invoices] == []
    everything = list(client.iter_open_invoices(page_size=4))
    assert sorted(i.invoice_number for i in everything) == ["CREDIT", "INV0", "INV1", "INV2", "INV3", "INV4"]
    assert {i.balance_due for i in everything} == {Decimal("10.00"), Decimal("-3.25")}
    with pytest.raises(InvoiceCloudError, match="PageSize"):
        client.list_open_invoices(1, 0)


def test_list_open_invoices_when_none(ic_sim: IcSim) -> None:
    page = ic_sim.client(timeout=10).list_open_invoices(1, 10)
    assert page.invoices == [] and page.total_count == 0


def test_update_invoice_balance(ic_sim: IcSim) -> None:
    ic_sim.sim.add_invoice(ic_sim.biller_guid, "A1", "INV1", "100.00")
    client = ic_sim.client(timeout=10)
    assert client.update_invoice_balance("A1", "INV1", Decimal("40.10")) == OperationResult(True, "")
    (inv,) = ic_sim.sim.invoices(ic_sim.biller_guid)
    assert (inv["balance_due"], inv["total_amount_due"]) == (Decimal("40.10"), Decimal("100.00"))
    assert client.update_invoice_balance("A1", "INV1", "0", total_amount_due="95.5").success
    (inv,) = ic_sim.sim.invoices(ic_sim.biller_guid)
    assert (inv["balance_due"], inv["total_amount_due"]) == (Decimal("0.00"), Decimal("95.50"))
    assert client.list_open_invoices().total_count == 0
    missing = client.update_invoice_balance("A1", "NOPE", 1)
    assert not missing.success and "not found" in missing.error_message
    wrong = client.update_invoice_balance("A2", "INV1", 1)
    assert not wrong.success and "not on account A2" in wrong.error_message


def test_view_and_update_customer_record(ic_sim: IcSim) -> None:
    sim, guid = ic_sim.sim, ic_sim.biller_guid
    sim.add_customer(guid, "A1", customer_name="Ann", email_address="ann@example.org", phone="555-0100")
    client = ic_sim.client(timeout=10)
    assert client.update_customer_record("A1", paperless=True, block_payments_eft=True).success
    record = client.view_customer_record("A1")
    assert record is not None
    assert (record.email_address, record.phone) == ("ann@example.org", "555-0100")  # untouched
    assert (record.paperless, record.auto_pay, record.block_payments_cc, record.block_payments_eft) == (
        True,
        False,
        False,
        True,
    )
    assert client.update_customer_record("A1", email_address="new@example.org", phone="", auto_pay=True).success
    record = client.view_customer_record("A1")
    assert record is not None
    assert (record.email_address, record.phone, record.paperless, record.auto_pay) == (
        "new@example.org",
        "",
        True,
        True,
    )
    nobody = client.update_customer_record("NOPE", paperless=False)
    assert not nobody.success and "not found" in nobody.error_message
    assert client.view_customer_record("NOPE") is None


def test_list_payments(ic_sim: IcSim) -> None:
    sim, guid = ic_sim.sim, ic_sim.biller_guid
    first = sim.add_payment(
        guid,
        "A1",
        "INV1",
        "25.00",
        datetime(2026, 11, 2, 9, 30),
        convenience_fee="1.95",
        payment_type="PayPal",
        channel="Web",
    )
    sim.add_payment(guid, "A2", "INV2", "10", datetime(2026, 11, 2, 23, 59, 59), payment_type="ACH", channel="IVR")
    sim.add_payment(guid, "A3", "INV3", "5", datetime(2026, 11, 3), channel="POS", cashier_name="Pat")
    sim.add_payment(str(uuid.uuid4()), "A1", "INV1", "99", datetime(2026, 11, 2, 10))  # another biller
    client = ic_sim.client(timeout=10)
    payments = client.list_payments(datetime(2026, 11, 2), datetime(2026, 11, 3))
    assert [p.account_number for p in payments] == ["A1", "A2"]  # ToDate is exclusive
    p = payments[0]
    assert (p.payment_guid, p.payment_amount, p.convenience_fee, p.payment_type, p.channel) == (
        first,
        Decimal("25.00"),
        Decimal("1.95"),
        "PayPal",
        "Web",
    )
    assert p.payment_date == datetime(2026, 11, 2, 9, 30) and p.cashier_name == ""
    ivr = client.list_payments(datetime(2026, 11, 1), datetime(2026, 11, 4), channel="IVR")
    assert [x.payment_type for x in ivr] == ["ACH"]
    pos = client.list_payments(datetime(2026, 11, 1), datetime(2026, 11, 4), channel="POS")
    assert [x.cashier_name for x in pos] == ["Pat"]
    assert client.list_payments(datetime(2026, 10, 1), datetime(2026, 10, 2)) == []


def test_list_change_log(ic_sim: IcSim) -> None:
    sim, guid = ic_sim.sim, ic_sim.biller_guid
    sim.add_change(guid, "A1", "Paperless", "On", datetime(2026, 11, 2, 8))
    sim.add_change(guid, "A2", "Email", "x@example.org", datetime(2026, 11, 2, 9))
    sim.add_change(guid, "A3", "AutoPay", "Off", datetime(2026, 11, 5))
    client = ic_sim.client(timeout=10)
    changes = client.list_change_log(datetime(2026, 11, 2), datetime(2026, 11, 3))
    assert [(c.account_number, c.change_type, c.new_value) for c in changes] == [
        ("A1", "Paperless", "On"),
        ("A2", "Email", "x@example.org"),
    ]
    assert changes[0].changed_at == datetime(2026, 11, 2, 8)
    assert client.list_change_log(datetime(2026, 12, 1), datetime(2026, 12, 2)) == []
    # a biller-side update is not echoed into the change log
    sim.add_customer(guid, "A1")
    assert client.update_customer_record("A1", paperless=False).success
    assert len(client.list_change_log(datetime(2026, 1, 1), datetime(2027, 1, 1))) == 3


def test_one_cached_client_serves_many_threads(ic_sim: IcSim) -> None:
    """Operators share the cached client across threads (pool_maxsize matches the threads)."""
    from concurrent.futures import ThreadPoolExecutor

    for n in range(8):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, f"A{n}", f"INV{n}", f"{n + 1}.00")
    client = ic_sim.client(timeout=10)

    def view(n: int) -> Decimal:
        invoice = client.view_invoice_by_invoice_number(f"INV{n % 8}")
        assert invoice is not None
        return invoice.balance_due

    with ThreadPoolExecutor(max_workers=8) as pool:
        balances = list(pool.map(view, range(80)))
    assert balances == [Decimal(f"{n % 8 + 1}.00") for n in range(80)]
    assert client.soap_client("CloudInvoicing") is ic_sim.client(timeout=10).soap_client("CloudInvoicing")


# ---------------------------------------------------------------------------------------------
# refusals


def test_bad_credentials(ic_sim: IcSim) -> None:
    bad = wrong_key_client(ic_sim)
    data = make_bif(ic_sim.biller_guid, TWO_INVOICES)
    result = bad.upload_invoice_file("x.BIF", data)
    assert (result.success, result.error_message, result.file_id) == (False, INVALID_CREDENTIALS, "")
    assert bad.update_invoice_balance("A", "I", 1) == OperationResult(False, INVALID_CREDENTIALS)
    assert bad.update_customer_record("A", paperless=True) == OperationResult(False, INVALID_CREDENTIALS)
    calls = [
        lambda: bad.view_invoice_by_invoice_number("B1001"),
        lambda: bad.list_open_invoices(),
        lambda: bad.view_customer_record("A"),
        lambda: bad.list_change_log(datetime(2026, 1, 1), datetime(2026, 2, 1)),
        lambda: bad.list_payments(datetime(2026, 1, 1), datetime(2026, 2, 1)),
    ]
    for call in calls:  # a fault that refuses the credentials: final, not retried (issue 15)
        with pytest.raises(CredentialsRefused) as info:
            call()
        assert info.value.message == f"credentials refused: {INVALID_CREDENTIALS}"
        assert ic_sim.web_service_key not in str(info.value)
    unknown = InvoiceCloudClient(ic_sim.base_url, str(uuid.uuid4()), ic_sim.web_service_key, timeout=10)
    assert unknown.upload_invoice_file("x.BIF", data).error_message == INVALID_CREDENTIALS
    assert ic_sim.sim.uploads() == [] and ic_sim.sim.invoices(ic_sim.biller_guid) == []


def test_bad_bif_is_refused_with_the_checks_message(ic_sim: IcSim) -> None:
    broken = [dict(TWO_INVOICES[0], InvoiceDate="2026-11-01"), TWO_INVOICES[1]]
    data = make_bif(ic_sim.biller_guid, broken)
    problems = check_bif(data, "UB_bad.BIF")
    assert problems  # the lead's check finds the ISO date
    result = ic_sim.client(timeout=10).upload_invoice_file("UB_bad.BIF", data)
    assert not result.success
    assert result.error_message == "; ".join(problems)
    assert (result.file_id, result.invoices_accepted, result.invoices_rejected) == ("", 0, 2)
    assert ic_sim.sim.invoices(ic_sim.biller_guid) == []
    assert ic_sim.sim.customers(ic_sim.biller_guid) == []
    (upload,) = ic_sim.sim.uploads(ic_sim.biller_guid)
    assert not upload["success"] and upload["message"] == result.error_message and upload["file_id"] is None


def test_bif_for_another_biller_is_refused(ic_sim: IcSim) -> None:
    data = make_bif(str(uuid.uuid4()), TWO_INVOICES)
    assert check_bif(data, "x.BIF") == []
    result = ic_sim.client(timeout=10).upload_invoice_file("x.BIF", data)
    assert not result.success and "FH BillerGuid" in result.error_message
    assert ic_sim.sim.invoices(ic_sim.biller_guid) == []


def test_not_base64_and_empty_files_are_refused(ic_sim: IcSim) -> None:
    client = ic_sim.client(timeout=10)
    empty = client.upload_invoice_file("empty.BIF", b"")
    assert not empty.success and "empty" in empty.error_message
    service = client.soap_client("CloudInvoicing").service
    # zeep does not type-check: hand it text that is not base64 to see the server's answer
    raw = service.UploadInvoiceFile(
        BillerGUID=ic_sim.biller_guid, WebServiceKey=ic_sim.web_service_key, FileName="x.BIF", FileContent="%%%"
    )
    assert raw.Success is False and "base64" in raw.ErrorMessage


def test_reupload_replaces_an_invoice(ic_sim: IcSim) -> None:
    client = ic_sim.client(timeout=10)
    assert client.upload_invoice_file("a.BIF", make_bif(ic_sim.biller_guid, TWO_INVOICES)).success
    again = [dict(TWO_INVOICES[0], TotalAmountDue="600.00")]
    assert client.upload_invoice_file("b.BIF", make_bif(ic_sim.biller_guid, again)).success
    invoice = client.view_invoice_by_invoice_number("B1001")
    assert invoice is not None and invoice.balance_due == Decimal("600.00")
    assert len(ic_sim.sim.invoices(ic_sim.biller_guid)) == 2 and len(ic_sim.sim.uploads()) == 2


def test_server_refuses_dtd_unknown_methods_and_non_soap(ic_sim: IcSim) -> None:
    url = ic_sim.base_url + "/CloudInvoicing.asmx"
    ns = IC_NS.format("CloudInvoicing")
    evil = (
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "boom">]>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<ListOpenInvoices xmlns="{ns}"><BillerGUID>&x;</BillerGUID></ListOpenInvoices>'
        "</soap:Body></soap:Envelope>"
    ).encode()
    response = raw_post(url, evil)
    assert response.status_code == 500 and "DTD is prohibited" in response.text and "boom" not in response.text
    unknown = (
        '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
        f'<DropTables xmlns="{ns}"/></soap:Body></soap:Envelope>'
    ).encode()
    response = raw_post(url, unknown, soap12=True)
    assert response.status_code == 500 and "soap:Sender" in response.text and "did not recognize" in response.text
    assert response.headers["Content-Type"].startswith("application/soap+xml")
    assert raw_post(url, b"<a>not soap</a>").status_code == 500
    assert raw_post(url, b"<<<").status_code == 500


def test_handler_exception_is_a_server_fault(tmp_path: Path) -> None:
    def broken(_: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    def refused(_: dict[str, Any]) -> dict[str, Any]:
        raise SoapFault("no thanks")

    with SoapServer() as server:
        server.add_service(
            "/ws/CloudInvoicing.asmx",
            WSDL_DIR / "CloudInvoicing.wsdl",
            {"ListOpenInvoices": broken, "ViewInvoiceByInvoiceNumber": refused},
        )
        client = InvoiceCloudClient(server.url + "/ws", "g", "k", timeout=10)
        with pytest.raises(InvoiceCloudError) as info:
            client.list_open_invoices()
        assert "disk on fire" in info.value.message and "Server" in (info.value.code or "")
        with pytest.raises(InvoiceCloudError, match="no thanks"):
            client.view_invoice_by_invoice_number("1")
        with pytest.raises(InvoiceCloudError, match="did not recognize"):
            client.upload_invoice_file("x", b"x")  # no handler registered for it
    with pytest.raises(ValueError, match="not in the WSDL"):
        SoapServer().add_service("/x.asmx", WSDL_DIR / "CloudPayments.wsdl", {"Typo": broken})


# ---------------------------------------------------------------------------------------------
# hardening: what zeep must refuse, and timeouts


def _static(body: bytes, status: str = "200 OK"):  # noqa: ANN202 - a WSGI app factory
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(status, [("Content-Type", "text/xml; charset=utf-8")])
        return [body]

    return app


def test_zeep_refuses_a_response_with_a_dtd_or_entities() -> None:
    ns = IC_NS.format("CloudInvoicing")
    laughs = (
        '<?xml version="1.0"?>'
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<UploadInvoiceFileResponse xmlns="{ns}"><UploadInvoiceFileResult><Success>true</Success>'
        "<ErrorMessage>&lol2;</ErrorMessage><InvoicesAccepted>1</InvoicesAccepted>"
        "<InvoicesRejected>0</InvoicesRejected></UploadInvoiceFileResult></UploadInvoiceFileResponse>"
        "</soap:Body></soap:Envelope>"
    ).encode()
    external = laughs.replace(
        b'<!DOCTYPE lolz [<!ENTITY lol "lol">', b'<!DOCTYPE lolz [<!ENTITY lol SYSTEM "file:///etc/passwd">'
    )
    with SoapServer() as server:
        server.mount("/dtd/CloudInvoicing.asmx", _static(laughs))
        server.mount("/ext/CloudInvoicing.asmx", _static(external))
        for prefix in ("/dtd", "/ext"):
            client = InvoiceCloudClient(server.url + prefix, "g", "k", timeout=10)
            with pytest.raises(MalformedAnswer, match="DOCTYPE"):
                client.upload_invoice_file("x.BIF", b"x")


def test_wsdl_with_an_external_import_is_refused(tmp_path: Path) -> None:
    fetched: list[str] = []

    def xsd(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        fetched.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [b'<s:schema xmlns:s="http://www.w3.org/2001/XMLSchema"/>']

    with SoapServer() as server:
        server.mount("/evil.xsd", xsd)
        text = (WSDL_DIR / "CloudPayments.wsdl").read_text()
        text = text.replace(
            '<s:schema elementFormDefault="qualified"',
            f'<s:schema><s:import namespace="urn:evil" schemaLocation="{server.url}/evil.xsd"/></s:schema>'
            '<s:schema elementFormDefault="qualified"',
            1,
        )
        wsdl = tmp_path / "Evil.wsdl"
        wsdl.write_text(text)
        with pytest.raises(zeep.exceptions.ExternalReferenceForbidden):
            make_client(wsdl, server.url + "/x.asmx")
    assert fetched == []


def test_operation_timeout_fires_against_a_slow_endpoint() -> None:
    release = threading.Event()

    def slow(_: dict[str, Any]) -> dict[str, Any]:
        release.wait(10)
        return {"Invoices": [], "TotalCount": 0}

    with SoapServer() as server:
        server.add_service("/slow/CloudInvoicing.asmx", WSDL_DIR / "CloudInvoicing.wsdl", {"ListOpenInvoices": slow})
        client = InvoiceCloudClient(server.url + "/slow", "g", "k", timeout=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(requests.exceptions.Timeout):
                client.list_open_invoices()
            assert time.monotonic() - started < 3
        finally:
            release.set()


def test_empty_and_absent_error_message_are_both_empty_text() -> None:
    answers = {
        "empty": {"Success": True, "ErrorMessage": "", "FileID": "F1", "InvoicesAccepted": 1, "InvoicesRejected": 0},
        "absent": {"Success": True, "FileID": "F2", "InvoicesAccepted": 1, "InvoicesRejected": 0},
        "text": {"Success": False, "ErrorMessage": "nope", "InvoicesAccepted": 0, "InvoicesRejected": 3},
    }
    with SoapServer() as server:
        for name, answer in answers.items():
            server.add_service(
                f"/{name}/CloudInvoicing.asmx",
                WSDL_DIR / "CloudInvoicing.wsdl",
                {"UploadInvoiceFile": lambda _args, a=answer: a},
            )
        raw = {}
        for name in answers:
            endpoint = f"{server.url}/{name}/CloudInvoicing.asmx"
            svc = make_client(WSDL_DIR / "CloudInvoicing.wsdl", endpoint, timeout=10).service
            raw[name] = svc.UploadInvoiceFile(BillerGUID="g", WebServiceKey="k", FileName="f", FileContent=b"x")
        assert raw["empty"].ErrorMessage is None and raw["absent"].ErrorMessage is None  # the zeep pitfall
        results = {
            n: InvoiceCloudClient(f"{server.url}/{n}", "g", "k", timeout=10).upload_invoice_file("f", b"x")
            for n in answers
        }
    assert results["empty"].error_message == "" and results["absent"].error_message == ""
    assert results["text"].error_message == "nope" and results["text"].file_id == ""
    assert results["absent"].file_id == "F2"


# ---------------------------------------------------------------------------------------------
# credentials stay out of repr, pickles and logs


def test_client_hides_credentials(ic_sim: IcSim, caplog: pytest.LogCaptureFixture) -> None:
    client = ic_sim.client(timeout=10)
    assert ic_sim.web_service_key not in repr(client) and ic_sim.biller_guid not in repr(client)
    with pytest.raises(TypeError):
        pickle.dumps(client)
    caplog.set_level(logging.DEBUG)
    client.list_open_invoices()
    assert ic_sim.web_service_key not in caplog.text  # nothing logs the envelope's credentials
    assert ic_sim.biller_guid not in caplog.text
    assert (
        redact_soap("<a:WebserviceKey x='1'>s3cret</a:WebserviceKey>") == "<a:WebserviceKey x='1'>***</a:WebserviceKey>"
    )


# ---------------------------------------------------------------------------------------------
# the Airflow hook


def test_hook_test_connection_and_client(ic_sim: IcSim, ic_conn_id: str) -> None:
    from airflow.sdk.log import _secrets_masker

    from icbridge.hooks.invoice_cloud import InvoiceCloudHook

    ic_sim.sim.add_invoice(ic_sim.biller_guid, "A1", "INV1", "5.00")
    hook = InvoiceCloudHook(ic_conn_id=ic_conn_id)
    ok, message = hook.test_connection()
    assert ok, message
    assert "1 open invoices" in message
    client = hook.get_conn()
    assert isinstance(client, InvoiceCloudClient) and client.base_url == ic_sim.base_url
    assert client.timeout == 10
    assert hook.biller_guid == ic_sim.biller_guid
    assert client.view_invoice_by_invoice_number("INV1") is not None
    masked = _secrets_masker().redact(f"guid={ic_sim.biller_guid} key={ic_sim.web_service_key}")
    assert ic_sim.biller_guid not in masked and ic_sim.web_service_key not in masked


def test_hook_test_connection_reports_failures(ic_sim: IcSim, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from icbridge.hooks.invoice_cloud import InvoiceCloudHook

    def conn(conn_id: str, host: str, key: str) -> None:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps(
                {
                    "conn_type": "invoice_cloud",
                    "host": host,
                    "login": ic_sim.biller_guid,
                    "password": key,
                    "extra": {"timeout": 2, "verify": "false"},
                }
            ),
        )

    conn("ic_wrong_key", ic_sim.base_url, "wrong-key-123")
    ok, message = InvoiceCloudHook("ic_wrong_key").test_connection()
    assert not ok and INVALID_CREDENTIALS in message and "wrong-key-123" not in message
    port = ic_sim.server.port
    ic_sim.server.stop()
    conn("ic_down", f"http://127.0.0.1:{port}/portal/webservices", ic_sim.web_service_key)
    ok, message = InvoiceCloudHook("ic_down").test_connection()
    assert not ok and "ConnectionError" in message


def test_hook_is_provider_style() -> None:
    from icbridge.hooks.invoice_cloud import InvoiceCloudHook
    from icbridge.provider_info import get_provider_info

    assert (InvoiceCloudHook.conn_name_attr, InvoiceCloudHook.default_conn_name) == (
        "ic_conn_id",
        "invoice_cloud_default",
    )
    assert (InvoiceCloudHook.conn_type, InvoiceCloudHook.hook_name) == ("invoice_cloud", "Invoice Cloud")
    ui = InvoiceCloudHook.get_ui_field_behaviour()
    assert set(ui["hidden_fields"]) == {"schema", "port"}
    assert ui["relabeling"]["login"] == "Biller GUID" and ui["relabeling"]["password"] == "Web service key"
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "invoice_cloud"]
    assert entry["hook-class-name"] == f"{InvoiceCloudHook.__module__}.{InvoiceCloudHook.__qualname__}"
    assert InvoiceCloudHook._base_url("ws.example.com", 8443, "portal/webservices") == (
        "https://ws.example.com:8443/portal/webservices"
    )
    assert InvoiceCloudHook._base_url("https://h/p/", None, None) == "https://h/p"


def test_a_bif_part_over_10_mb_goes_through_to_the_simulator(ic_sim: IcSim, tmp_path: Path) -> None:
    """The part's base64 is one text node over libxml2's 10 MB default: the client sends it and
    the IC simulator (huge trees with entities/DTD/network off) takes it, by default settings."""
    import dataclasses

    from tests.support.aus_mapping import SETTINGS, bills, run

    guid, key = str(uuid.uuid4()), secrets.token_urlsafe(16)
    ic_sim.sim.add_biller(guid, key, SETTINGS.bid)
    mapped = run(tmp_path, bills(20_000, lines=2), dataclasses.replace(SETTINGS, biller_guid=guid))
    (part,) = mapped.result.bifs
    content = part.path.read_bytes()
    assert 8 << 20 < len(content) <= SETTINGS.max_bytes_per_file  # base64: over 10 MB in the envelope
    client = InvoiceCloudClient(ic_sim.base_url, guid, key, timeout=60)
    result = client.upload_invoice_file(part.name, content)
    assert result.success, result.error_message
    assert result.invoices_accepted == 20_000


def test_a_large_part_is_checked_apart_with_the_same_outcome(tmp_path: Path) -> None:
    """A part of CHECK_APART_BYTES or more is checked by the simulator's checker processes (so
    parts uploaded at once are checked at once, as by IC's farm): the same acceptance, the same
    refusal message as check_bif gives here, and no process left once the simulator stops."""
    import dataclasses

    import psutil

    from icbsim.ic_uploads import CHECK_APART_BYTES
    from icbsim.invoice_cloud import InvoiceCloudSimulator
    from tests.support.aus_mapping import SETTINGS, bills, run

    guid = str(uuid.uuid4()).upper()
    mapped = run(tmp_path, bills(3_000, lines=2), dataclasses.replace(SETTINGS, biller_guid=guid))
    (part,) = mapped.result.bifs
    good = part.path.read_bytes()
    assert len(good) >= CHECK_APART_BYTES
    bad = good.replace(b",IH,", b",IH,", 1)
    at = bad.index(b"\r\nIH,", 1000) + 2
    bad = bad[:at] + b"XX" + bad[at + 2:]  # an unknown row type in the middle of the part
    with InvoiceCloudSimulator(tmp_path / "ic.sqlite") as sim:
        sim.add_biller(guid, "k", SETTINGS.bid)
        client = InvoiceCloudClient(sim.base_url, guid, "k", timeout=60)
        assert client.upload_invoice_file("good.BIF", good).invoices_accepted == 3_000
        refused = client.upload_invoice_file("bad.BIF", bad)
        client.close()
        checkers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
        assert checkers, "the large parts were checked in the simulator's own processes"
    assert not refused.success
    assert refused.error_message == "; ".join(check_bif(bad, "bad.BIF"))
    assert "unknown row type 'XX'" in refused.error_message
    gone, alive = psutil.wait_procs(checkers, timeout=10)
    assert not alive, alive


def test_a_dead_checker_is_replaced_and_none_starts_after_stop(tmp_path: Path) -> None:
    """A checker killed while idle breaks the pool: new checkers start (the simulator's own
    thread does not check every part from then on); once stopped, a request still
    being handled is checked in the simulator's thread and starts no checker."""
    import dataclasses

    import psutil

    from icbsim.invoice_cloud import InvoiceCloudSimulator
    from tests.support.aus_mapping import SETTINGS, bills, run

    def checkers() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]

    guid = str(uuid.uuid4()).upper()
    mapped = run(tmp_path, bills(3_000, lines=2), dataclasses.replace(SETTINGS, biller_guid=guid))
    content = mapped.result.bifs[0].path.read_bytes()
    sim = InvoiceCloudSimulator(tmp_path / "ic.sqlite").start()
    try:
        sim.add_biller(guid, "k", SETTINGS.bid)
        client = InvoiceCloudClient(sim.base_url, guid, "k", timeout=60)
        assert client.upload_invoice_file("a.BIF", content).invoices_accepted == 3_000
        (first,) = checkers()
        first.kill()
        first.wait(10)
        # the next part finds the pool broken (new checkers take it) or, if the death is not
        # noticed yet, fails in the pool and is checked here; the one after goes to new checkers
        assert client.upload_invoice_file("b.BIF", content).invoices_accepted == 3_000
        assert client.upload_invoice_file("c.BIF", content).invoices_accepted == 3_000
        assert [p.pid for p in checkers()] not in ([], [first.pid])
        client.close()
    finally:
        sim.stop()
    psutil.wait_procs(checkers(), timeout=10)
    assert sim._check_bif(content, "late.BIF")() == ([], 3_000)  # noqa: SLF001 - a request handled after stop()
    assert checkers() == []


def test_checker_processes_never_run_the_script_that_started_the_simulator(tmp_path: Path) -> None:
    """A script with no ``if __name__ == "__main__"`` guard starts the simulator and uploads a
    large part: the checkers (spawned) do not run the script again (it would start a second
    simulator on the same database), and the part is checked by them."""
    import dataclasses
    import subprocess
    import sys

    from tests.support.aus_mapping import SETTINGS, bills, run

    guid = str(uuid.uuid4()).upper()
    mapped = run(tmp_path, bills(3_000, lines=2), dataclasses.replace(SETTINGS, biller_guid=guid))
    (part,) = mapped.result.bifs
    runs = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import os, psutil\n"
        "from icbsim.invoice_cloud import InvoiceCloudSimulator\n"
        "from icbridge.soap.invoice_cloud import InvoiceCloudClient\n"
        f"with open({str(runs)!r}, 'a') as f: f.write('run\\n')\n"
        f"with InvoiceCloudSimulator({str(tmp_path / 'ic.sqlite')!r}) as sim:\n"
        f"    sim.add_biller({guid!r}, 'k', {SETTINGS.bid!r})\n"
        f"    client = InvoiceCloudClient(sim.base_url, {guid!r}, 'k', timeout=60)\n"
        f"    answer = client.upload_invoice_file('p.BIF', open({str(part.path)!r}, 'rb').read())\n"
        "    kids = [p for p in psutil.Process().children() if 'spawn_main' in ' '.join(p.cmdline())]\n"
        "    print(answer.invoices_accepted, len(kids))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3000", "1"], done.stdout  # one checker started for the one part
    assert runs.read_text() == "run\n", "a checker ran the script again"


def test_upload_template_is_the_envelope_zeep_sends(ic_sim: IcSim) -> None:
    """UploadInvoiceFile is rendered from a template (a 20 MiB part's base64 in C, not through
    zeep's tree): the same envelope, canonically, as zeep's for the same file name and bytes."""
    from lxml import etree

    client = ic_sim.client(timeout=10)
    content = "FH,é,&<>\r\n".encode() + bytes(range(256))
    operation = client.operation("CloudInvoicing", "UploadInvoiceFile", template=True)
    plain = client.operation("CloudInvoicing", "UploadInvoiceFile")
    got = operation.render(FileName="a&b<c>.BIF", FileContent=content)
    expected = plain.render(FileName="a&b<c>.BIF", FileContent=content)
    assert etree.tostring(etree.fromstring(got), method="c14n") == etree.tostring(
        etree.fromstring(expected), method="c14n"
    )
    result = client.upload_invoice_file("x.BIF", content)  # the simulator decodes it and judges the bytes
    assert not result.success and "x.BIF" in result.error_message


def test_an_accepted_upload_is_stored_even_when_the_simulator_stops_first(tmp_path: Path) -> None:
    """The simulator answers once a file is checked and stores its invoices on the next read of
    its state; stopping it first stores them too (SimStack keeps its database across restarts),
    with the upload's receipt time, and a refused file is never stored."""
    from icbsim.invoice_cloud import InvoiceCloudSimulator

    guid = str(uuid.uuid4()).upper()
    db = tmp_path / "ic.sqlite"
    with InvoiceCloudSimulator(db) as sim:
        sim.add_biller(guid, "k", "123")
        client = InvoiceCloudClient(sim.base_url, guid, "k", timeout=10)
        assert client.upload_invoice_file("a.BIF", make_bif(guid, TWO_INVOICES)).invoices_accepted == 2
        refused = make_bif(guid, [{**TWO_INVOICES[0], "InvoiceNumber": "B9"}]).replace(b"562.28", b"5x")
        assert not client.upload_invoice_file("b.BIF", refused).success
        client.close()
    reopened = InvoiceCloudSimulator(db)
    try:
        received = {u["file_name"]: u["received_at"] for u in reopened.uploads()}
        invoices = reopened.invoices(guid)
        assert sorted(i["invoice_number"] for i in invoices) == ["B1001", "B1002"]
        with reopened._tx() as conn:
            stamps = {row[0] for row in conn.execute("SELECT updated_at FROM invoices")}
        assert stamps == {received["a.BIF"].isoformat()}  # the receipt time, not the time of storing
    finally:
        reopened.stop()
