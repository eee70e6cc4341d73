"""The template rendering (``.lean()``) must answer exactly what the zeep-rendered call answers.

Both paths call the same simulators over real HTTP; every case runs through both and the
results (frozen dataclasses) or the errors (type and message) must be equal: successes,
not-found, refusals, absent and empty optional fields, SOAP faults, HTTP errors, dropped
connections, timeouts, odd characters in account numbers (the simulator must receive them
intact), ListOpenInvoices pages with the payment blocks (true / false / nil). Plus the
hardening: TLS verified against a CA file, no DTDs, credentials never pickled or printed.
"""

from __future__ import annotations

import pickle
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from icbridge.reconcile.cis import aus_lookup, inhance_lookup
from icbridge.reconcile.compare import CisAccount
from icbridge.reconcile.engine import LookupNotFound, LookupRefused, LookupTransient
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import CisFault, CisHttpError
from icbridge.soap.errors import CredentialsRefused, MalformedAnswer
from icbridge.soap.inhance import WSDL as INHANCE_WSDL
from icbridge.soap.inhance import InhanceClient
from icbsim.aus import AusSimulator
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer
from icbsim.tls import make_test_pki

ODD_ACCOUNTS = ["A&B<1>", "quote\"'s", "Zoë-日本-€", "emoji🙂", " padded ", "]]>x", "tab\tcr\rlf\n"]


@pytest.fixture
def server() -> Iterator[SoapServer]:
    with SoapServer() as s:
        yield s


@pytest.fixture
def inhance(server: SoapServer, tmp_path: Path) -> Iterator[tuple[InhanceSimulator, InhanceClient]]:
    sim = InhanceSimulator(tmp_path / "inhance.sqlite", server)
    key = secrets.token_urlsafe(16) + "&<>"  # the key is escaped into the template too
    sim.add_biller("b1", key)
    sim.add_account("b1", "100", balance="12.34", future_balance="20.05", phone=" 555-0100 ", email="a@example.com")
    sim.add_account("b1", "200", balance="-3.10")  # no phone, no email: absent / empty fields
    for number in ODD_ACCOUNTS:
        sim.add_account("b1", number, balance="1.00")
    yield sim, InhanceClient.single(sim.endpoint_url("b1"), key, timeout=5, pool_maxsize=4)
    sim.stop()


@pytest.fixture
def aus(server: SoapServer, tmp_path: Path) -> Iterator[tuple[AusSimulator, AusClient]]:
    sim = AusSimulator(tmp_path / "aus.sqlite", server)
    key = secrets.token_urlsafe(16)
    sim.add_biller("b2", key)
    sim.add_account("b2", "100", balance="40.00", past_due="5.00", cash_only=True, email="x@example.com",
                    customer_number="C1", location_number="L1")
    sim.add_account("b2", "200", balance="0")
    for number in ODD_ACCOUNTS:
        sim.add_account("b2", number, balance="2.00")
    yield sim, AusClient.single(sim.endpoint_url("b2"), key, timeout=5, pool_maxsize=4)
    sim.stop()


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A result, or the error's type and what it says (for comparing the two paths)."""
    try:
        return ("result", call())
    except CisFault as exc:
        return ("CisFault", (exc.service, exc.operation, exc.message, exc.code))
    except CisHttpError as exc:
        return ("CisHttpError", (exc.service, exc.operation, exc.status_code))
    except requests.Timeout:
        return ("Timeout", None)
    except requests.ConnectionError:
        return ("ConnectionError", None)
    except MalformedAnswer as exc:
        return ("MalformedAnswer", None if type(exc) is MalformedAnswer else str(exc))
    except ValueError as exc:
        return ("ValueError", str(exc))


def _same(zeep_call: Callable[[], Any], lean_call: Callable[[], Any]) -> tuple[str, Any]:
    expected, got = _outcome(zeep_call), _outcome(lean_call)
    assert got == expected
    return got


# inHance BalanceCheck ---------------------------------------------------------------------


def test_balance_check_answers_are_equal(inhance):
    sim, client = inhance
    lean = client.lean()
    kind, ok = _same(lambda: client.balance_check("100", 7), lambda: lean.balance_check("100", "7"))
    assert kind == "result" and ok.ok and ok.balance == Decimal("12.34") and ok.future_balance == Decimal("20.05")
    assert ok.phone == "555-0100" and ok.email == "a@example.com"
    _, bare = _same(lambda: client.balance_check("200", 1), lambda: lean.balance_check("200", 1))
    assert bare.balance == Decimal("-3.10") and bare.phone == "" and bare.email == ""
    _, missing = _same(lambda: client.balance_check("999", 1), lambda: lean.balance_check("999", 1))
    assert not missing.ok and missing.not_found and missing.balance is None
    # not an integer: refused before any call, by both
    assert _same(lambda: client.balance_check("100", "INV-1"), lambda: lean.balance_check("100", "INV-1"))[0] == (
        "ValueError"
    )


def test_balance_check_odd_characters_reach_the_cis_intact(inhance):
    sim, client = inhance
    lean = client.lean()
    for number in ODD_ACCOUNTS:
        kind, result = _same(lambda n=number: client.balance_check(n, 1), lambda n=number: lean.balance_check(n, 1))
        assert kind == "result"
    received = [r["args"]["AccountNumber"] for r in sim.received("b1", "BalanceCheck")]
    assert received == [n for n in ODD_ACCOUNTS for _ in range(2)]
    # characters XML cannot carry are refused by both paths, nothing is sent
    before = len(sim.received("b1"))
    assert _same(lambda: client.balance_check("A\x00B", 1), lambda: lean.balance_check("A\x00B", 1))[0] == (
        "ValueError"
    )
    assert len(sim.received("b1")) == before


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("business", "result"), ("fault", "CisFault"), ("http500", "CisHttpError"), ("drop", "ConnectionError")],
)
def test_balance_check_faults_are_equal(inhance, kind, expected):
    sim, client = inhance
    lean = client.lean()
    lean.balance_check("100", 1)  # a kept-alive connection must not hide a drop either
    sim.faults.set("BalanceCheck", kind=kind, message="CIS is closed for maintenance", times=2)
    got = _same(lambda: client.balance_check("100", 1), lambda: lean.balance_check("100", 1))
    assert got[0] == expected
    if kind == "business":
        assert not got[1].ok and got[1].message == "CIS is closed for maintenance"
    if kind == "fault":
        assert "CIS is closed for maintenance" in got[1][2] and got[1][3] == "soap:Server"
    if kind == "http500":
        assert got[1][2] == 500
    # after the fault, the lean path's connection is usable again
    assert lean.balance_check("100", 1).ok


def test_timeouts_are_requests_timeouts(inhance):
    sim, client = inhance
    fast = InhanceClient.single(client.endpoint_url("BalanceCheck"), sim._endpoints[("b1", "default")].key,
                                timeout=0.3)
    lean = fast.lean()
    sim.faults.set("BalanceCheck", kind="latency", seconds=1.0, times=2)
    assert _same(lambda: fast.balance_check("100", 1), lambda: lean.balance_check("100", 1)) == ("Timeout", None)


# AUS GetAccountData -----------------------------------------------------------------------


def test_get_account_data_answers_are_equal(aus):
    sim, client = aus
    lean = client.lean()
    _, data = _same(lambda: client.get_account_data("100"), lambda: lean.get_account_data("100"))
    assert data.ok and data.cash_only and data.balance == Decimal("40.00") and data.past_due == Decimal("5.00")
    assert (data.customer_number, data.location_number, data.email_address) == ("C1", "L1", "x@example.com")
    _, zero = _same(lambda: client.get_account_data("200"), lambda: lean.get_account_data("200"))
    assert zero.ok and zero.balance == 0 and not zero.cash_only and zero.email_address == ""
    _, missing = _same(lambda: client.get_account_data("999"), lambda: lean.get_account_data("999"))
    assert missing.not_found and missing.code == 1 and missing.balance is None
    for number in ODD_ACCOUNTS:  # the simulator strips the number, so " padded " is not found: by both paths
        result = _same(lambda n=number: client.get_account_data(n), lambda n=number: lean.get_account_data(n))[1]
        assert result.ok == (number == number.strip())
    for kind, expected in (("business", "result"), ("fault", "CisFault"), ("http500", "CisHttpError")):
        sim.faults.set("GetAccountData", kind=kind, times=2)
        assert _same(lambda: client.get_account_data("100"), lambda: lean.get_account_data("100"))[0] == expected


def test_lookups_over_both_paths_give_the_engine_the_same(inhance, aus):
    (isim, iclient), (asim, aclient) = inhance, aus
    for zeep_lookup, lean_lookup in (
        (inhance_lookup(iclient), inhance_lookup(iclient.lean())),
        (aus_lookup(aclient), aus_lookup(aclient.lean())),
    ):
        assert zeep_lookup("100", "1") == lean_lookup("100", "1")
        assert isinstance(lean_lookup("100", "1"), CisAccount)
        for account, error in (("999", LookupNotFound),):
            with pytest.raises(error):
                lean_lookup(account, "1")
    isim.faults.set("BalanceCheck", kind="http500", times=1)
    with pytest.raises(LookupTransient):
        inhance_lookup(iclient.lean())("100", "1")
    asim.faults.set("GetAccountData", kind="fault", times=1)
    with pytest.raises(LookupRefused, match="SOAP fault"):
        aus_lookup(aclient.lean())("100", "1")


# an answer that breaks the contract ---------------------------------------------------------


def _static(body: bytes, status: str = "200 OK") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(status, [("Content-Type", "text/xml; charset=utf-8")])
        return [body]

    return app


_ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>{dtd}<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soap:Body><BalanceCheckResponse xmlns="http://tempuri.org/"><BalanceCheckResult>{fields}'
    "</BalanceCheckResult></BalanceCheckResponse></soap:Body></soap:Envelope>"
)


def test_answers_against_the_contract_are_judged_alike_on_both_renderings(server):
    """Same bytes, same judgement: a value in no accepted form and a DTD are refused by the
    zeep-rendered and the template-rendered call alike; an unknown element is ignored by both."""
    cases = {
        "/bad-decimal.asmx": _ENVELOPE.format(dtd="", fields="<Balance>abc</Balance><FutureBalance>1</FutureBalance>"
                                              "<Success>true</Success>"),
        "/dtd.asmx": _ENVELOPE.format(dtd='<!DOCTYPE x [<!ENTITY e "boom">]>',
                                      fields="<Balance>1</Balance><FutureBalance>1</FutureBalance>"
                                      "<Email>&e;</Email><Success>true</Success>"),
    }
    for path, body in cases.items():
        server.mount(path, _static(body.encode()))
        client = InhanceClient.single(server.url + path, "k", timeout=5)
        with pytest.raises(MalformedAnswer):
            client.balance_check("1", 1)
        with pytest.raises(MalformedAnswer):
            client.lean().balance_check("1", 1)
    server.mount("/unknown-field.asmx", _static(_ENVELOPE.format(
        dtd="", fields="<Surprise>1</Surprise><Success>true</Success><FutureBalance>1</FutureBalance>"
        "<Balance>2.50</Balance>").encode()))
    client = InhanceClient.single(server.url + "/unknown-field.asmx", "k", timeout=5)
    assert client.balance_check("1", 1) == client.lean().balance_check("1", 1)
    assert client.balance_check("1", 1).balance == Decimal("2.50")


def test_every_calling_thread_checks_answers_against_the_schema(inhance, server):
    """The lean path validates with one XMLSchema per thread (no shared lock): answers from many
    threads at once are the zeep path's, and a schema-breaking answer is refused in each."""
    sim, client = inhance
    lean = client.lean()
    expected = client.balance_check("100", 1)
    server.mount("/bad.asmx", _static(_ENVELOPE.format(
        dtd="", fields="<Balance>abc</Balance><FutureBalance>1</FutureBalance><Success>true</Success>").encode()))
    bad = InhanceClient.single(server.url + "/bad.asmx", "k", timeout=5).lean()
    outcomes: list[Any] = []

    def calls() -> None:
        for _ in range(10):
            outcomes.append(lean.balance_check("100", 1))
            outcomes.append(_outcome(lambda: bad.balance_check("1", 1)))

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(expected) == 80, set(map(str, outcomes))
    assert outcomes.count(("MalformedAnswer", None)) == 80


def test_the_simulator_records_every_call_in_order_across_its_batches(inhance):
    """Read calls are recorded in batches (sim.cis._RECORD_BATCH); received() must still show
    every call at once, in call order, with a payment call in between recorded in its own turn."""
    sim, client = inhance
    lean = client.lean()
    lean.balance_check("100", 1)
    assert [r["args"]["LastInvoiceNumber"] for r in sim.received("b1")] == ["1"]  # visible at once
    for n in range(2, 300):
        lean.balance_check("100", n)
        if n == 150:
            assert client.make_payment_extended("200", datetime(2026, 11, 2, 9, 30), "PAY-1", "DOC-1",
                                                "Credit Card", "1.00").ok
    received = sim.received("b1")
    assert [(r["method"], r["args"]["LastInvoiceNumber"] if r["method"] == "BalanceCheck" else "-")
            for r in received] == [("BalanceCheck", str(n)) for n in range(1, 151)] + [
        ("MakePaymentExtended", "-")] + [("BalanceCheck", str(n)) for n in range(151, 300)]
    assert [r["id"] for r in received] == sorted(r["id"] for r in received)
    assert len(sim.payments("b1")) == 1 and sim.account("b1", "200")["balance"] == Decimal("-4.10")


# IC ListOpenInvoices ----------------------------------------------------------------------


def test_list_open_invoices_pages_are_equal_with_the_payment_blocks(ic_sim):
    sim, guid = ic_sim.sim, ic_sim.biller_guid
    sim.add_invoice(guid, "A&<1", "1", "10.00", "10.00")
    sim.add_invoice(guid, "A&<1", "2", "11.00", "4.50")
    sim.add_invoice(guid, "B2", "3", "7.00", "7.00")
    sim.add_invoice(guid, "C3", "4", "9.99", "0")  # paid: not open
    sim.add_invoice(guid, "D4", "5", "1.00", "-1.00")  # a credit is open
    sim.add_customer(guid, "A&<1", block_payments_cc=True, block_payments_eft=True)
    sim.add_customer(guid, "B2", block_payments_cc=False, block_payments_eft=True)
    client = ic_sim.client(timeout=10)
    lean = client.lean()
    for size in (1, 2, 500):
        assert list(lean.iter_open_invoices(size)) == list(client.iter_open_invoices(size))
    invoices = {i.invoice_number: i for i in lean.iter_open_invoices(2)}
    assert set(invoices) == {"1", "2", "3", "5"}
    assert (invoices["1"].block_payments_cc, invoices["1"].block_payments_eft) == (True, True)
    assert (invoices["3"].block_payments_cc, invoices["3"].block_payments_eft) == (False, True)
    assert (invoices["5"].block_payments_cc, invoices["5"].block_payments_eft) == (None, None)  # nil: no record
    assert lean.list_open_invoices(9, 2) == client.list_open_invoices(9, 2)  # past the end: empty, same total
    bad = type(client)(ic_sim.base_url, guid, "wrong-key", timeout=10)
    with pytest.raises(CredentialsRefused) as zeep_error:  # final at once (issue 15)
        bad.list_open_invoices()
    with pytest.raises(CredentialsRefused) as lean_error:
        bad.lean().list_open_invoices()
    assert lean_error.value.message == zeep_error.value.message


# hardening --------------------------------------------------------------------------------


def test_credentials_are_neither_pickled_nor_printed(inhance, ic_sim):
    sim, client = inhance
    key = sim._endpoints[("b1", "default")].key
    for lean in (client.lean(), ic_sim.client().lean()):
        with pytest.raises(TypeError):
            pickle.dumps(lean)
        assert key not in repr(lean) and ic_sim.web_service_key not in repr(lean)


def _tls_server(pki: Any, body: bytes) -> tuple[socket.socket, threading.Thread]:
    """A one-connection HTTPS server answering every request with ``body``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                conn = context.wrap_socket(raw, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(body), body))
                conn.close()
            except (OSError, ssl.SSLError, StopIteration):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_tls_is_verified_against_the_ca_file(tmp_path, monkeypatch):
    pki = make_test_pki(tmp_path / "pki")
    body = _ENVELOPE.format(dtd="", fields="<Balance>1.50</Balance><FutureBalance>2</FutureBalance>"
                            "<Success>true</Success>").encode()
    listener, _ = _tls_server(pki, body)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_cert))  # must be ignored, as on the zeep path
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing.pem"))
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/iCloud.asmx"
    try:
        with pytest.raises(requests.exceptions.SSLError):
            InhanceClient.single(url, "k", timeout=5).lean().balance_check("1", 1)
        trusted = InhanceClient.single(url, "k", timeout=5, ca_file=str(pki.ca_cert)).lean()
        assert trusted.balance_check("1", 1).balance == Decimal("1.50")
    finally:
        listener.close()


def test_the_template_is_the_envelope_zeep_sends(inhance):
    from lxml import etree

    from icbridge.soap.client import make_client

    sim, client = inhance
    lean = client.lean()
    zeep_client = make_client(INHANCE_WSDL, client.endpoint_url("BalanceCheck"))
    key = sim._endpoints[("b1", "default")].key
    expected = etree.tostring(
        zeep_client.create_message(zeep_client.service, "BalanceCheck", AccountNumber="A&<é", LastInvoiceNumber=42,
                                   WebServiceKey=key),
        xml_declaration=True, encoding="utf-8",
    )
    got = lean._operation.render(AccountNumber="A&<é", LastInvoiceNumber=42)
    assert etree.tostring(etree.fromstring(got), method="c14n") == etree.tostring(
        etree.fromstring(expected), method="c14n"
    )


def test_aus_compares_the_blocks_listed_with_the_invoices_without_customer_record_calls(ic_sim, tmp_path):
    from icbridge.flows.balance_all import run_balance_all
    from icbridge.reconcile.compare import Rules
    from icbridge.reconcile.engine import Limits, Settings
    from icbridge.reconcile.invoice_cloud import InvoiceCloudSide, ic_accounts
    from icbridge.state.reconcile import ReconcileStore

    sim, guid = ic_sim.sim, ic_sim.biller_guid
    for n, (account, cc, eft) in enumerate((("100", True, True), ("200", False, False), ("300", True, False))):
        sim.add_invoice(guid, account, str(n + 1), "5.00", "5.00")
        sim.add_customer(guid, account, block_payments_cc=cc, block_payments_eft=eft)
    cis = {"100": True, "200": True, "300": False}  # CashOnly: 100 matches, 200 and 300 differ
    client = ic_sim.client(timeout=10)
    side = InvoiceCloudSide(client)
    asked: list[str] = []
    side.flags = lambda account: asked.append(account)  # type: ignore[method-assign]
    store = ReconcileStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        report = run_balance_all(
            biller_id="t", week="2026-W45", accounts=ic_accounts(client.lean(), page_size=2),
            cis_lookup=lambda account, invoice: CisAccount(Decimal("5.00"), cash_only=cis[account]),
            ic_side=side, settings=Settings(rules=Rules(cash_only=True), limits=Limits(max_in_flight=2)),
            error_threshold_pct=2, store=store,
        )
        items = {i["account_number"]: i for i in store.items(report.run_id)}
    finally:
        store.dispose()
    assert asked == []  # no ViewCustomerRecord: the blocks came with ListOpenInvoices
    assert report.summary.counts["match"] == 1 and set(items) == {"200", "300"}
    assert (items["200"]["ic_block_cc"], items["200"]["ic_block_eft"]) == (False, False)
    assert items["300"]["outcome"] == "flags_mismatch" and items["300"]["ic_block_cc"] is True
