"""inHance and AUS clients, hooks and simulators over real HTTP (zeep <-> SoapServer).

Every method of both clients runs against its simulator; each fault kind of
icbsim.faults is provoked and the client's reaction checked; rule 6 (per-method
endpoint and password) and the hooks' connections (AIRFLOW_CONN_* env vars) are exercised.
Keys are generated per test, never written to the repo.
"""

from __future__ import annotations

import json
import pickle
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from lxml import etree

from icbridge.calls import RateLimiter
from icbridge.config.biller import BillerConfig, BillerConfigError, load_biller
from icbridge.hooks.aus import AusHook
from icbridge.hooks.inhance import InhanceHook
from icbridge.soap import aus as aus_mod
from icbridge.soap import inhance as inhance_mod
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import DEFAULT, CisEndpoint, CisFault, CisHttpError
from icbridge.soap.inhance import InhanceClient
from icbsim.aus import AusSimulator
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer

REPO = Path(__file__).resolve().parents[3]
BILLER = "b1"
WHEN = datetime(2026, 11, 25, 9, 30)


@dataclass
class Cis:
    server: SoapServer
    inhance: InhanceSimulator
    aus: AusSimulator
    keys: dict[str, str]
    urls: dict[str, str]

    def inhance_client(self, **options: object) -> InhanceClient:
        """Default endpoint for everything except payments (rule 6)."""
        endpoints = {
            DEFAULT: CisEndpoint(self.urls["inhance"], self.keys["inhance"]),
            "MakePaymentExtended": CisEndpoint(self.urls["payments"], self.keys["payments"]),
        }
        return InhanceClient(endpoints, **{"timeout": 10, **options})  # type: ignore[arg-type]

    def aus_client(self, **options: object) -> AusClient:
        return AusClient.single(self.urls["aus"], self.keys["aus"], **{"timeout": 10, **options})  # type: ignore[arg-type]


@pytest.fixture
def cis(tmp_path: Path) -> Iterator[Cis]:
    server = SoapServer().start()
    inhance = InhanceSimulator(tmp_path / "inhance.sqlite", server)
    aus = AusSimulator(tmp_path / "aus.sqlite", server)
    keys = {name: secrets.token_urlsafe(16) for name in ("inhance", "payments", "aus")}
    urls = {
        "inhance": inhance.add_biller(BILLER, keys["inhance"]),
        "payments": inhance.add_endpoint(BILLER, "payments", keys["payments"]),
        "aus": aus.add_biller(BILLER, keys["aus"]),
    }
    inhance.add_account(BILLER, "1001", balance="120.50", future_balance="145.50", email="a@example.org", phone="555")
    inhance.add_account(BILLER, "1002", balance="0")
    aus.add_account(
        BILLER,
        "2001",
        balance="80.00",
        past_due="12.00",
        cash_only=True,
        email="c@example.org",
        customer_number="C1",
        location_number="L1",
    )
    aus.add_account(BILLER, "2002", balance="5")
    try:
        yield Cis(server, inhance, aus, keys, urls)
    finally:
        server.stop()
        inhance.stop()
        aus.stop()


# contract ---------------------------------------------------------------------------------

WS = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"
SPEC_INPUTS = {
    "iCloud.wsdl": {
        "BalanceCheck": ["AccountNumber", "LastInvoiceNumber", "WebServiceKey"],
        "MakePaymentExtended": [
            "AccountNumber",
            "PaymentDate",
            "PaymentReference",
            "DocumentNumber",
            "PaymentTypeDesc",
            "PaymentAmount",
            "ConvenienceFee",
            "WebserviceKey",
        ],
        "SetPaperless": ["Accountnumber", "PaperlessOnOff", "WebserviceKey"],
        "SetAutopay": ["Accountnumber", "AutoPayOnOff", "WebserviceKey"],
        "SetEmail": ["Accountnumber", "NewEmail", "WebserviceKey"],
    },
    "AusCis.wsdl": {
        "GetAccountData": ["AccountNumber", "WebServiceKey"],
        "AddPendingPayment": [
            "AccountNumber",
            "PaymentDate",
            "PaymentAmount",
            "ConvenienceFee",
            "PaymentType",
            "PaymentReference",
            "WebServiceKey",
        ],
        "UpdatePaymentPlan": ["AccountNumber", "AutoPayEnrolled", "WebServiceKey"],
        "UpdateCisLinkTableEBillAndLinkRegistration": [
            "AccountNumber",
            "EBillEnrolled",
            "EmailAddress",
            "WebServiceKey",
        ],
        "RetrieveBillPrintImageV2": ["AccountNumber", "BillNumber", "WebServiceKey"],
    },
}


@pytest.mark.parametrize("wsdl", sorted(SPEC_INPUTS))
def test_wsdl_request_fields_match_the_spec_exactly(wsdl: str) -> None:
    """Names, casing (Accountnumber, WebserviceKey vs WebServiceKey) and order of web-services.md."""
    root = etree.parse(str(inhance_mod.WSDL.parent / wsdl)).getroot()
    schema = root.find(f"{{{WS}}}types/{{{XS}}}schema")
    found = {}
    for op in SPEC_INPUTS[wsdl]:
        element = schema.find(f"{{{XS}}}element[@name='{op}']")
        found[op] = [e.get("name") for e in element.iter(f"{{{XS}}}element") if e is not element]
    assert found == SPEC_INPUTS[wsdl]
    assert root.get("targetNamespace") == "http://tempuri.org/"


# inHance ----------------------------------------------------------------------------------


def test_inhance_balance_check(cis: Cis) -> None:
    client = cis.inhance_client()
    result = client.balance_check("1001", 7001)
    assert result.ok and result.message == ""
    assert (result.balance, result.future_balance) == (Decimal("120.50"), Decimal("145.50"))
    assert isinstance(result.balance, Decimal)
    assert (result.phone, result.email) == ("555", "a@example.org")
    empty = client.balance_check("1002", "7002")
    assert empty.ok and empty.email == "" and empty.phone == ""  # None and "" alike
    missing = client.balance_check("9999", 1)
    assert not missing.ok and missing.not_found and missing.balance is None
    assert missing.message == "Account not found"
    with pytest.raises(ValueError, match="LastInvoiceNumber"):
        client.balance_check("1001", "INV-12")
    (call,) = [r for r in cis.inhance.received(method="BalanceCheck") if r["account_number"] == "1001"]
    assert call["args"]["LastInvoiceNumber"] == "7001" and call["endpoint"].endswith(f"/{BILLER}/iCloud.asmx")


def test_inhance_payment_goes_to_its_own_endpoint_with_its_own_key(cis: Cis) -> None:
    client = cis.inhance_client()
    assert client.endpoint_url("MakePaymentExtended") == cis.urls["payments"]
    result = client.make_payment_extended("1001", WHEN, "PAY-1", "DOC-1", "Credit Card", Decimal("20.50"), "1.95")
    assert result.ok, result.message
    (payment,) = cis.inhance.payments(BILLER)
    assert payment["endpoint"].endswith("/payments/iCloud.asmx")
    assert payment["amount"] == Decimal("20.50") and payment["convenience_fee"] == Decimal("1.95")
    assert (payment["reference"], payment["document_number"], payment["payment_type"]) == (
        "PAY-1",
        "DOC-1",
        "Credit Card",
    )
    assert payment["payment_date"] == WHEN
    assert cis.inhance.account(BILLER, "1001")["balance"] == Decimal("100.00")
    # The default key is not the payments endpoint's password: refused, nothing applied.
    wrong = InhanceClient(
        {
            DEFAULT: CisEndpoint(cis.urls["inhance"], cis.keys["inhance"]),
            "MakePaymentExtended": CisEndpoint(cis.urls["payments"], cis.keys["inhance"]),
        },
        timeout=10,
    )
    refused = wrong.make_payment_extended("1001", WHEN, "PAY-2", "DOC-2", "Credit Card", "5", 0)
    assert not refused.ok and refused.message == "Invalid credentials" and not refused.not_found
    assert len(cis.inhance.payments(BILLER)) == 1
    # A non-positive amount is a business refusal, not an exception.
    assert not client.make_payment_extended("1001", WHEN, "PAY-3", "DOC-3", "ACH", "0", 0).ok
    assert len(cis.inhance.payments(BILLER)) == 1


def test_inhance_paperless_autopay_email(cis: Cis) -> None:
    client = cis.inhance_client()
    assert client.set_paperless("1001", True).ok
    assert client.set_autopay("1001", False).ok
    assert client.set_email("1001", "new@example.org").ok
    assert [(c["method"], c["field"], c["value"]) for c in cis.inhance.changes(BILLER)] == [
        ("SetPaperless", "paperless", True),
        ("SetAutopay", "autopay", False),
        ("SetEmail", "email", "new@example.org"),
    ]
    sent = {r["method"]: r["args"] for r in cis.inhance.received(BILLER)}
    assert sent["SetPaperless"] == {"Accountnumber": "1001", "PaperlessOnOff": "On"}
    assert sent["SetAutopay"] == {"Accountnumber": "1001", "AutoPayOnOff": "Off"}
    account = cis.inhance.account(BILLER, "1001")
    assert (account["paperless"], account["autopay"], account["email"]) == (True, False, "new@example.org")
    assert client.set_email("4242", "x@example.org").not_found
    assert len(cis.inhance.changes(BILLER)) == 3


def test_set_email_follows_the_paperless_endpoint(cis: Cis) -> None:
    paperless_url = cis.inhance.add_endpoint(BILLER, "paperless", "paperless-key")
    client = InhanceClient(
        {
            DEFAULT: CisEndpoint(cis.urls["inhance"], cis.keys["inhance"]),
            "SetPaperless": CisEndpoint(paperless_url, "paperless-key"),
        },
        timeout=10,
    )
    assert client.endpoint_url("SetEmail") == paperless_url
    assert client.endpoint_url("SetAutopay") == cis.urls["inhance"]
    assert client.set_email("1001", "e@example.org").ok
    assert cis.inhance.changes(BILLER)[-1]["endpoint"].endswith("/paperless/iCloud.asmx")


def test_client_config_errors_and_secrecy(cis: Cis) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        InhanceClient({"MakePayment": CisEndpoint("http://x", "k")})
    only_payments = InhanceClient({"MakePaymentExtended": CisEndpoint(cis.urls["payments"], cis.keys["payments"])})
    with pytest.raises(ValueError, match="no endpoint configured for inHance BalanceCheck"):
        only_payments.balance_check("1001", 1)
    client, aus = cis.inhance_client(), cis.aus_client()
    for obj in (client, aus, CisEndpoint("http://x", cis.keys["aus"])):
        assert cis.keys["inhance"] not in repr(obj) and cis.keys["aus"] not in repr(obj)
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(obj)


# AUS ----------------------------------------------------------------------------------------


def test_aus_get_account_data(cis: Cis) -> None:
    client = cis.aus_client()
    data = client.get_account_data("2001")
    assert data.ok and data.code == 0
    assert (data.account_number, data.customer_number, data.location_number) == ("2001", "C1", "L1")
    assert (data.balance, data.past_due, data.cash_only) == (Decimal("80.00"), Decimal("12.00"), True)
    assert data.email_address == "c@example.org"
    assert client.get_account_data("2002").cash_only is False
    missing = client.get_account_data("nope")
    assert (missing.ok, missing.code, missing.not_found, missing.message) == (False, 1, True, "Account not found")
    bad = AusClient.single(cis.urls["aus"], "wrong-key", timeout=10).get_account_data("2001")
    assert (bad.ok, bad.code, bad.not_found, bad.balance) == (False, aus_mod.INVALID_CREDENTIALS, False, None)


def test_aus_payment_autopay_paperless(cis: Cis) -> None:
    client = cis.aus_client()
    result = client.add_pending_payment("2001", WHEN, "25.00", "CreditCard", "PAY-9", convenience_fee="1.00")
    assert result.ok and result.pending_payment_id
    (payment,) = cis.aus.payments(BILLER)
    assert (payment["amount"], payment["payment_type"], payment["reference"]) == (
        Decimal("25.00"),
        "CreditCard",
        "PAY-9",
    )
    assert cis.aus.account(BILLER, "2001")["balance"] == Decimal("80.00")  # pending: balance unchanged
    assert client.update_payment_plan("2001", True).ok
    assert client.update_ebill_registration("2001", True, "p@example.org").ok
    assert client.update_ebill_registration("2002", False).ok
    assert [(c["account_number"], c["field"], c["value"]) for c in cis.aus.changes(BILLER)] == [
        ("2001", "autopay", True),
        ("2001", "paperless", True),
        ("2001", "email", "p@example.org"),
        ("2002", "paperless", False),
    ]
    assert client.update_payment_plan("nope", True).code == aus_mod.ACCOUNT_NOT_FOUND


def test_aus_bill_image(cis: Cis) -> None:
    client = cis.aus_client()
    stored = cis.aus.add_bill(BILLER, "2001", "B-1")
    image = client.retrieve_bill_print_image("2001", "B-1")
    assert image.ok and image.is_pdf and image.content == stored
    assert image.content.startswith(b"%PDF-") and image.content.rstrip().endswith(b"%%EOF")
    assert "bytes=" in repr(image) and b"%PDF" not in repr(image).encode()
    missing = client.retrieve_bill_print_image("2001", "B-2")
    assert (missing.ok, missing.code, missing.not_found, missing.content) == (False, aus_mod.BILL_NOT_FOUND, True, b"")
    cis.aus.add_bill(BILLER, "2002", "B-3", content=b"<html>oops</html>")
    odd = client.retrieve_bill_print_image("2002", "B-3")
    assert odd.ok and not odd.is_pdf


# faults -------------------------------------------------------------------------------------


def test_fault_latency_within_timeout_still_answers(cis: Cis) -> None:
    cis.inhance.faults.set("BalanceCheck", kind="latency", seconds=0.3)
    assert cis.inhance_client(timeout=10).balance_check("1001", 1).ok
    assert cis.inhance.faults.fired == [("BalanceCheck", "latency")]


def test_fault_business_failures_are_results_at_a_reproducible_rate(cis: Cis) -> None:
    client = cis.aus_client()

    def run() -> list[bool]:
        cis.aus.faults.set(kind="business", rate=0.5, seed=11)
        return [client.get_account_data("2001").ok for _ in range(16)]

    first, second = run(), run()
    assert first == second  # the same seed hits the same calls
    assert 0 < first.count(False) < 16
    cis.aus.faults.set("GetAccountData", kind="business", times=1, message="CIS busy")
    refused = client.get_account_data("2001")
    assert (refused.ok, refused.code, refused.message, refused.not_found) == (
        False,
        aus_mod.OTHER_ERROR,
        "CIS busy",
        False,
    )
    assert client.get_account_data("2001").ok  # times=1: spent
    cis.inhance.faults.set("SetAutopay", kind="business")
    result = cis.inhance_client().set_autopay("1001", True)
    assert (result.ok, result.message) == (False, "Simulated failure")
    assert cis.inhance.changes(BILLER) == []


def test_fault_http_500_raises_typed_error(cis: Cis) -> None:
    cis.inhance.faults.set(kind="http500", times=1)
    with pytest.raises(CisHttpError) as caught:
        cis.inhance_client().balance_check("1001", 1)
    assert caught.value.status_code == 500 and cis.keys["inhance"] not in str(caught.value)
    assert cis.inhance_client().balance_check("1001", 1).ok


def test_fault_soap_fault_raises_cis_fault(cis: Cis) -> None:
    cis.aus.faults.set("UpdatePaymentPlan", kind="fault")
    with pytest.raises(CisFault) as caught:
        cis.aus_client().update_payment_plan("2001", True)
    assert caught.value.operation == "UpdatePaymentPlan" and caught.value.service == "aus"
    assert cis.keys["aus"] not in str(caught.value)
    assert cis.aus.changes(BILLER) == []
    assert cis.aus_client().get_account_data("2001").ok  # only that method


def test_fault_dropped_connection_is_a_connection_error_and_nothing_applied(cis: Cis) -> None:
    cis.inhance.faults.set("MakePaymentExtended", kind="drop", times=1)
    with pytest.raises(requests.ConnectionError):
        cis.inhance_client().make_payment_extended("1001", WHEN, "PAY-D", "DOC", "ACH", "10", 0)
    assert cis.inhance.payments(BILLER) == []


def test_fault_late_answer_times_out_but_the_cis_applied_it(cis: Cis) -> None:
    cis.inhance.faults.set("MakePaymentExtended", kind="late", seconds=2, times=1)
    with pytest.raises(requests.Timeout):
        cis.inhance_client(timeout=0.5).make_payment_extended("1001", WHEN, "PAY-L", "DOC", "ACH", "10", 0)
    (payment,) = cis.inhance.payments(BILLER)  # in doubt: the payment is there although the client gave up
    assert payment["reference"] == "PAY-L"


def test_fault_non_pdf_payload(cis: Cis) -> None:
    cis.aus.add_bill(BILLER, "2001", "B-1")
    cis.aus.faults.set("RetrieveBillPrintImageV2", kind="non_pdf", times=1)
    image = cis.aus_client().retrieve_bill_print_image("2001", "B-1")
    assert image.ok and not image.is_pdf
    assert cis.aus_client().retrieve_bill_print_image("2001", "B-1").is_pdf


def test_fault_api_rejects_nonsense(cis: Cis) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        cis.aus.faults.set(kind="explode")
    with pytest.raises(ValueError, match="rate"):
        cis.aus.faults.set(kind="business", rate=2)
    cis.aus.faults.set(kind="fault")
    cis.aus.faults.clear()
    assert cis.aus_client().get_account_data("2001").ok


def test_32_calls_in_flight(cis: Cis) -> None:
    """Balance All runs 32 calls at once against one simulator: all answered, each once."""
    for n in range(64):
        cis.inhance.add_account(BILLER, f"5{n:03d}", balance=n)
    client = cis.inhance_client(pool_maxsize=32)
    limiter = RateLimiter(10_000)

    def check(n: int) -> Decimal | None:
        limiter.acquire()
        return client.balance_check(f"5{n:03d}", n).balance

    with ThreadPoolExecutor(32) as pool:
        balances = list(pool.map(check, range(64)))
    assert balances == [Decimal(n) for n in range(64)]
    assert len(cis.inhance.received(method="BalanceCheck")) == 64


# hooks --------------------------------------------------------------------------------------


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str, url: str, key: str | None) -> None:
    fields = {"conn_type": conn_type, "host": url, "extra": {"timeout": 10}}
    if key is not None:
        fields["password"] = key
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_inhance_hook_per_method_connections(cis: Cis, monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "ih", "inhance", cis.urls["inhance"], cis.keys["inhance"])
    _conn(monkeypatch, "ih_pay", "inhance", cis.urls["payments"], cis.keys["payments"])
    hook = InhanceHook("ih", {"MakePaymentExtended": "ih_pay"}, timeout=10)
    assert hook.test_connection() == (True, "Connected to inHance (Account not found)")
    client = hook.get_conn()
    assert client.endpoint_url("MakePaymentExtended") == cis.urls["payments"]
    assert client.make_payment_extended("1001", WHEN, "PAY-H", "DOC", "ACH", "1", 0).ok
    assert cis.inhance.payments(BILLER)[0]["endpoint"].endswith("/payments/iCloud.asmx")
    ok, message = InhanceHook("ih_pay").test_connection()  # a method connection tests on its own too
    assert ok, message
    _conn(monkeypatch, "ih_bad", "inhance", cis.urls["inhance"], "not-the-key")
    ok, message = InhanceHook("ih_bad").test_connection()
    assert not ok and "Invalid credentials" in message and "not-the-key" not in message


def test_method_connection_without_password_uses_the_default_one(cis: Cis, monkeypatch: pytest.MonkeyPatch) -> None:
    rtdr_url = cis.inhance.add_endpoint(BILLER, "rtdr", cis.keys["inhance"])  # setting 8: a URL, no password
    _conn(monkeypatch, "ih", "inhance", cis.urls["inhance"], cis.keys["inhance"])
    _conn(monkeypatch, "ih_rtdr", "inhance", rtdr_url, None)
    client = InhanceHook("ih", {"BalanceCheck": "ih_rtdr"}).get_conn()
    assert client.balance_check("1001", 1).ok
    assert cis.inhance.received(method="BalanceCheck")[-1]["endpoint"].endswith("/rtdr/iCloud.asmx")


def test_aus_hook_and_for_biller(cis: Cis, monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "aus_x", "aus_cis", cis.urls["aus"], cis.keys["aus"])
    biller = BillerConfig.model_validate(
        {
            "biller_id": "x_aus",
            "bid": "9",
            "name": "X",
            "cis": "aus",
            "ic_conn_id": "ic",
            "cis_service": {"conn_id": "aus_x", "timeout_seconds": 7, "calls_in_flight": 4},
        }
    )
    hook = AusHook.for_biller(biller)
    assert (hook.cis_conn_id, hook.timeout, hook.pool_maxsize) == ("aus_x", 7, 4)
    assert hook.test_connection() == (True, "Connected to AUS (Account not found)")
    assert hook.get_conn().timeout == 7
    _conn(monkeypatch, "aus_down", "aus_cis", "http://127.0.0.1:9/nothing.asmx", "k")
    ok, message = AusHook("aus_down").test_connection()
    assert not ok and "ConnectionError" in message


def test_provider_lists_the_cis_connection_types() -> None:
    from icbridge.provider_info import get_provider_info

    types = {c["connection-type"]: c["hook-class-name"] for c in get_provider_info()["connection-types"]}
    assert types["inhance"] == "icbridge.hooks.inhance.InhanceHook"
    assert types["aus_cis"] == "icbridge.hooks.aus.AusHook"
    assert InhanceHook.get_ui_field_behaviour()["relabeling"]["password"] == "Web service key"


# config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cis": "aus", "cis_service": {"conn_id": "c", "rtdr_version": 2}}, "rtdr_version: only for cis inhance"),
        ({"cis": "aus", "cis_service": {"conn_id": "c", "rtdr_updates_email": True}}, "only for cis inhance"),
        ({"cis": "inhance", "cis_service": {"conn_id": "c", "method_conn_ids": {"SetMail": "d"}}}, "SetMail"),
        ({"cis": "logis", "cis_service": {"conn_id": "c"}}, "logis has no web services"),
        ({"cis": "inhance", "cis_service": {"conn_id": "c", "rtdr_version": 3}}, "rtdr_version"),
        ({"cis": "inhance", "cis_service": {"conn_id": "c", "calls_in_flight": 0}}, "calls_in_flight"),
    ],
)
def test_cis_service_config_is_validated(tmp_path: Path, change: dict, message: str) -> None:
    import yaml

    raw = {"biller_id": "x_bad", "bid": "9", "name": "X", "ic_conn_id": "ic", **change}
    path = tmp_path / "x_bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BillerConfigError, match=message) as caught:
        load_biller(path)
    assert str(path) in str(caught.value)


def test_demo_billers_cis_sections() -> None:
    inhance = load_biller(REPO / "include" / "billers" / "demo_inhance.yaml")
    assert inhance.invoices is None and inhance.cis_service is not None
    assert inhance.cis_service.rtdr_version == 2
    assert inhance.cis_service.conn_ids() == ["demo_inhance_cis", "demo_inhance_cis_payments"]
    aus = load_biller(REPO / "include" / "billers" / "demo_aus.yaml")
    assert aus.cis_service is not None and aus.cis_service.rtdr_version == 1


# stack + demo data --------------------------------------------------------------------------


def test_sim_stack_serves_cis_billers_with_seeded_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from icbsim.demo_data import ACCOUNTS_PER_BILLER, demo_accounts, seed_demo
    from icbsim.stack import SimStack

    billers = tmp_path / "billers"
    billers.mkdir()
    for name in ("demo_aus", "demo_inhance"):
        shutil.copy(REPO / "include" / "billers" / f"{name}.yaml", billers)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with SimStack(tmp_path / "sim", billers_dir=billers) as stack:
        conns = stack.connections()
        assert conns["demo_inhance_cis"]["conn_type"] == "inhance"
        assert conns["demo_inhance_cis"]["host"] != conns["demo_inhance_cis_payments"]["host"]
        assert conns["demo_inhance_cis"]["password"] != conns["demo_inhance_cis_payments"]["password"]
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        first = seed_demo(stack)
        again = seed_demo(stack)
        assert first["demo_inhance"]["payments"] > 0 and again["demo_inhance"]["payments"] == 0
        inhance = InhanceHook.for_biller(stack.access("demo_inhance").biller)
        assert inhance.test_connection()[0]
        accounts = demo_accounts("125", "inhance")
        gap = next(a for a in accounts if a.cis_balance != a.ic_balance)
        result = inhance.get_conn().balance_check(gap.account_number, gap.invoice_number)
        assert result.ok and result.balance == gap.cis_balance
        assert inhance.get_conn().balance_check(accounts[-1].account_number, 1).not_found  # missing in CIS
        paid = inhance.get_conn().make_payment_extended(accounts[0].account_number, WHEN, "R", "D", "ACH", "1", 0)
        assert paid.ok and stack.inhance.payments("demo_inhance")[0]["endpoint"].endswith(
            "/demo_inhance_cis_payments/iCloud.asmx"
        )
        aus = AusHook.for_biller(stack.access("demo_aus").biller).get_conn()
        cash = aus.get_account_data(demo_accounts("123", "aus")[6].account_number)
        assert cash.ok and cash.cash_only
        ic_guid = stack.access("demo_inhance").biller_guid
        assert len(stack.ic.customers(ic_guid)) == ACCOUNTS_PER_BILLER
        assert len(stack.inhance.accounts("demo_inhance")) == ACCOUNTS_PER_BILLER - 1
