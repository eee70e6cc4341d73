"""Invoice Cloud simulator: the three IC web services over real HTTP, state in SQLite.

Why: the project must be testable and demonstrable without IC. It serves the project's
own WSDLs (include/icbridge/soap/wsdl) on :class:`~icbsim.soapserver.SoapServer`, so
zeep talks to it exactly as to IC. In parts: its state (:mod:`icbsim.ic_store`),
UploadInvoiceFile (:mod:`icbsim.ic_uploads`, the file read by :mod:`icbsim.ic_bif`), the other
methods (:mod:`icbsim.ic_methods`); this module puts them on one server and seeds them.

Behaviour, where IC's is unknown (this is the project's assumption, keep it in step with
shared/specs/web-services.md and the docs):

* Credentials: every call carries BillerGUID + WebServiceKey. GUIDs compare
  case-insensitively, keys exactly. A bad pair is answered the way an ASMX service answers
  an application error: methods whose result has Success/ErrorMessage (UploadInvoiceFile,
  UpdateInvoiceBalance, UpdateCustomerRecord) return ``Success=false``,
  ``ErrorMessage="Invalid credentials"`` and store nothing; the view/list methods, whose
  result has no such fields, answer a SOAP fault (soap:Client / soap:Sender) with the same
  text. The message never says which of the two was wrong.
* UploadInvoiceFile: the file is all-or-nothing. It runs the project's own pre-upload
  checks (:func:`icbridge.layouts.bif.check_bif`) plus "FH BillerGuid equals the caller's
  BillerGUID". A bad file gets ``Success=false``, the problems joined by "; ", no FileID,
  InvoicesRejected = its IH rows; only the upload record is kept. A good file gets a FileID
  and its invoices (and the customers of its CR rows) are stored; an invoice number seen
  before is replaced (a re-billed invoice). The answer comes once the file is checked (as IC
  queues a file for processing), so a 20 MiB part is answered in well under a second; its
  invoices are stored by the next read of the simulator's state (SOAP or Python), before
  that read: no read sees an accepted file's invoices missing. Files uploaded at once are
  checked at once, as by IC's web farm: one of 1 MiB or more in one of two checker processes.
* ViewInvoiceByInvoiceNumber / ViewCustomerRecord: an unknown number answers an empty
  Response (no Result element; zeep gives None), as ASMX does for a null result.
* ListOpenInvoices: invoices with BalanceDue != 0, ordered by account and invoice number;
  PageNumber from 1, PageSize 1..1000 (else a fault). Each invoice carries its account's
  payment blocks (customer record BlockPaymentsCC / BlockPaymentsEFT; nil without a record:
  an ASSUMED field, see the WSDL). A partial index keeps 250,000 open invoices fast to page.
* ListPayments / ListChangeLog: FromDate inclusive, ToDate exclusive, naive times taken as
  given (aware ones converted to UTC). Changes made through UpdateCustomerRecord are not
  written to the change log (that log is what customers changed on IC's side).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbsim.ic_methods import IcMethods
from icbsim.ic_store import INVALID_CREDENTIALS
from icbsim.ic_uploads import IcUploads
from icbsim.soapserver import SoapServer
from icbsim.values import money, stamp

__all__ = ["INVALID_CREDENTIALS", "InvoiceCloudSimulator"]


class InvoiceCloudSimulator(IcUploads, IcMethods):
    """IC's CloudInvoicing, CloudManagement and CloudPayments services, for tests and the demo.

    The state is :class:`~icbsim.ic_store.IcStore`'s, UploadInvoiceFile
    :class:`~icbsim.ic_uploads.IcUploads`', the other methods
    :class:`~icbsim.ic_methods.IcMethods`'; here: the server, the lifecycle and the seeding."""

    def __init__(
        self, db_path: Path, server: SoapServer | None = None, *, base_path: str = "/portal/webservices"
    ) -> None:
        from icbridge.soap.invoice_cloud import WSDL_DIR  # the same contract the client uses

        super().__init__(db_path)
        self.base_path = "/" + base_path.strip("/")
        self._own_server = server is None
        self.server = server if server is not None else SoapServer()
        handlers = {
            "CloudInvoicing": {
                "UploadInvoiceFile": self._upload_invoice_file,
                "ViewInvoiceByInvoiceNumber": self._view_invoice,
                "ListOpenInvoices": self._list_open_invoices,
                "UpdateInvoiceBalance": self._update_invoice_balance,
            },
            "CloudManagement": {
                "ViewCustomerRecord": self._view_customer_record,
                "UpdateCustomerRecord": self._update_customer_record,
                "ListChangeLog": self._list_change_log,
            },
            "CloudPayments": {"ListPayments": self._list_payments},
        }
        for service, ops in handlers.items():
            self.server.add_service(f"{self.base_path}/{service}.asmx", WSDL_DIR / f"{service}.wsdl", ops)

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> InvoiceCloudSimulator:
        """Start the server (only when this simulator created it)."""
        if self._own_server:
            self.server.start()
        return self

    def stop(self) -> None:
        if self._own_server:
            self.server.stop()
        self._stop_checkers()
        with self._lock:
            if self._to_store:  # accepted files are stored before the state is closed
                self._store_accepted()
            self._db.close()

    def __enter__(self) -> InvoiceCloudSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What goes in the Airflow connection's host: ``http://127.0.0.1:PORT/portal/webservices``."""
        return self.server.url + self.base_path

    # seeding (tests, demo) ---------------------------------------------------------------

    def add_biller(self, guid: str, key: str, bid: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO billers (guid, key, bid) VALUES (?, ?, ?)", (guid, key, bid))

    def add_invoice(
        self,
        biller_guid: str,
        account_number: str,
        invoice_number: str,
        total_amount_due: Decimal | int | str,
        balance_due: Decimal | int | str | None = None,
        *,
        invoice_date: date | None = None,
        due_date: date | None = None,
        customer_name: str = "",
    ) -> None:
        """Seed an invoice as if a BIF had brought it (open when balance_due != 0)."""
        total = money(total_amount_due)
        balance = total if balance_due is None else money(balance_due)
        invoice_date = invoice_date or date.today()
        with self._tx() as db:
            self._store_invoices(
                db,
                biller_guid,
                [{
                    "invoice_number": invoice_number,
                    "account_number": account_number,
                    "invoice_date": invoice_date,
                    "due_date": due_date or invoice_date + timedelta(days=30),
                    "total": total,
                    "balance": balance,
                    "allow_partial": None,
                    "block_cc": None,
                    "block_ach": None,
                    "customer_name": customer_name,
                }],
                file_id=None,
            )

    def add_invoices(self, biller_guid: str, invoices: Iterable[Mapping[str, Any]]) -> int:
        """Seed many invoices in one transaction (benchmarks: 250,000 in seconds). Each mapping
        has :meth:`add_invoice`'s arguments: account_number, invoice_number, total_amount_due and
        optionally balance_due, invoice_date, due_date, customer_name. Returns the count."""
        today = date.today()
        rows = []
        for inv in invoices:
            total = money(inv["total_amount_due"])
            invoice_date = inv.get("invoice_date") or today
            rows.append({
                "invoice_number": inv["invoice_number"],
                "account_number": inv["account_number"],
                "invoice_date": invoice_date,
                "due_date": inv.get("due_date") or invoice_date + timedelta(days=30),
                "total": total,
                "balance": total if inv.get("balance_due") is None else money(inv["balance_due"]),
                "allow_partial": None,
                "block_cc": None,
                "block_ach": None,
                "customer_name": inv.get("customer_name", ""),
            })
        with self._tx() as db:
            self._store_invoices(db, biller_guid, rows, file_id=None)
        return len(rows)

    def add_customers(self, biller_guid: str, customers: Iterable[Mapping[str, Any]]) -> int:
        """Seed many customer records in one transaction; each mapping has :meth:`add_customer`'s
        keyword arguments plus account_number. Returns the count."""
        rows = (
            (
                biller_guid,
                c["account_number"],
                c.get("customer_name", ""),
                c.get("email_address", ""),
                c.get("phone", ""),
                int(bool(c.get("block_payments_cc", False))),
                int(bool(c.get("block_payments_eft", False))),
                int(bool(c.get("paperless", False))),
                int(bool(c.get("auto_pay", False))),
            )
            for c in customers
        )
        with self._tx() as db:
            cursor = db.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return cursor.rowcount

    def add_customer(
        self,
        biller_guid: str,
        account_number: str,
        *,
        customer_name: str = "",
        email_address: str = "",
        phone: str = "",
        block_payments_cc: bool = False,
        block_payments_eft: bool = False,
        paperless: bool = False,
        auto_pay: bool = False,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    biller_guid,
                    account_number,
                    customer_name,
                    email_address,
                    phone,
                    int(block_payments_cc),
                    int(block_payments_eft),
                    int(paperless),
                    int(auto_pay),
                ),
            )

    def add_payment(
        self,
        biller_guid: str,
        account_number: str,
        invoice_number: str,
        payment_amount: Decimal | int | str,
        payment_date: datetime,
        *,
        convenience_fee: Decimal | int | str = 0,
        payment_type: str = "CreditCard",
        channel: str = "Web",
        cashier_name: str = "",
        payment_guid: str | None = None,
    ) -> str:
        """Seed a payment made on IC's side; returns its PaymentGUID."""
        payment_guid = payment_guid or str(uuid.uuid4())
        with self._tx() as db:
            db.execute(
                "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    biller_guid,
                    payment_guid,
                    account_number,
                    invoice_number,
                    stamp(payment_date),
                    str(money(payment_amount)),
                    str(money(convenience_fee)),
                    payment_type,
                    channel,
                    cashier_name,
                ),
            )
        return payment_guid

    def add_change(
        self,
        biller_guid: str,
        account_number: str,
        change_type: str,
        new_value: str,
        changed_at: datetime | None = None,
    ) -> None:
        """Seed a customer change made on IC's side (Paperless, AutoPay, Email, Phone)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO change_log (biller, account_number, change_type, new_value, changed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (biller_guid, account_number, change_type, new_value, stamp(changed_at or datetime.now(UTC))),
            )
