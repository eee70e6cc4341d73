"""Invoice Cloud simulator: the three IC web services over real HTTP, state in SQLite.

Why: the project must be testable and demonstrable without IC. It serves the project's
own WSDLs (include/icbridge/soap/wsdl) on :class:`~icbsim.soapserver.SoapServer`, so
zeep talks to it exactly as to IC.

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

import binascii
import csv
import hashlib
import hmac
import multiprocessing
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pybase64

from icbridge.layouts.bif import BifFile, check_bif, read_bif, registry
from icbridge.processes import workers_may_start
from icbsim.soapserver import NIL, SoapFault, SoapServer

__all__ = ["INVALID_CREDENTIALS", "InvoiceCloudSimulator"]

INVALID_CREDENTIALS = "Invalid credentials"
MAX_PAGE_SIZE = 1000
CHECK_APART_BYTES = 1 << 20  # a file this large is checked in a process of its own (_check_bif)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS billers (
    guid TEXT PRIMARY KEY COLLATE NOCASE, key TEXT NOT NULL, bid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT, file_id TEXT, biller TEXT NOT NULL COLLATE NOCASE,
    file_name TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, success INTEGER NOT NULL,
    message TEXT NOT NULL, invoices INTEGER NOT NULL, received_at TEXT NOT NULL, content BLOB);
CREATE TABLE IF NOT EXISTS invoices (
    biller TEXT NOT NULL COLLATE NOCASE, invoice_number TEXT NOT NULL, account_number TEXT NOT NULL,
    invoice_date TEXT NOT NULL, due_date TEXT NOT NULL, total_amount_due TEXT NOT NULL,
    balance_due TEXT NOT NULL, balance_cents INTEGER NOT NULL, allow_partial_payments INTEGER,
    block_credit_card INTEGER, block_ach INTEGER, customer_name TEXT, file_id TEXT,
    updated_at TEXT NOT NULL, PRIMARY KEY (biller, invoice_number));
CREATE TABLE IF NOT EXISTS customers (
    biller TEXT NOT NULL COLLATE NOCASE, account_number TEXT NOT NULL, customer_name TEXT NOT NULL,
    email_address TEXT NOT NULL, phone TEXT NOT NULL, block_payments_cc INTEGER NOT NULL,
    block_payments_eft INTEGER NOT NULL, paperless INTEGER NOT NULL, auto_pay INTEGER NOT NULL,
    PRIMARY KEY (biller, account_number));
CREATE TABLE IF NOT EXISTS payments (
    biller TEXT NOT NULL COLLATE NOCASE, payment_guid TEXT PRIMARY KEY, account_number TEXT NOT NULL,
    invoice_number TEXT NOT NULL, payment_date TEXT NOT NULL, payment_amount TEXT NOT NULL,
    convenience_fee TEXT NOT NULL, payment_type TEXT NOT NULL, channel TEXT NOT NULL,
    cashier_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS change_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, biller TEXT NOT NULL COLLATE NOCASE,
    account_number TEXT NOT NULL, change_type TEXT NOT NULL, new_value TEXT NOT NULL,
    changed_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS invoices_open ON invoices (biller, account_number, invoice_number)
    WHERE balance_cents != 0;
"""


# request values (strings from the soap server) -> Python; a bad value is the caller's fault


def _bad(name: str, value: Any, kind: str) -> SoapFault:
    return SoapFault(f"Server was unable to read request. ---> {name} {value!r} is not a valid {kind}")


def _str(args: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = args.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad(name, value, "string")
    if required and not value:
        raise SoapFault(f"{name} is required")
    return value


def _int(args: dict[str, Any], name: str) -> int:
    value = args.get(name)
    try:
        return int(str(value).strip())
    except ValueError:
        raise _bad(name, value, "int") from None


def _decimal(args: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    value = args.get(name)
    if value is None and not required:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _bad(name, value, "decimal") from None
    if not number.is_finite():
        raise _bad(name, value, "decimal")
    return number


def _bool(args: dict[str, Any], name: str) -> bool | None:
    value = args.get(name)
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _bad(name, value, "boolean")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _datetime(args: dict[str, Any], name: str) -> datetime:
    value = args.get(name)
    try:
        return _naive(datetime.fromisoformat(str(value).strip()))
    except ValueError:
        raise _bad(name, value, "dateTime") from None


def _stamp(moment: datetime) -> str:
    """One sortable text form for stored times, so SQL range filters compare correctly."""
    return _naive(moment).isoformat(timespec="microseconds")


def _bif_date(text: str) -> date:
    month, day, year = text.split("/")
    return date(int(year), int(month), int(day))


def _money(value: Decimal | int | str | float) -> Decimal:
    return (value if isinstance(value, Decimal) else Decimal(str(value))).quantize(Decimal("0.01"))


def sim_pragmas(db: sqlite3.Connection) -> None:
    """A simulator's state needs no durability: WAL without fsync makes a call's insert and
    commit ~30 us instead of ~1.5 ms on disk (Balance All at scale: 1,600 calls/s)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")


def _cents(value: Decimal) -> int:
    return int(value * 100)


def _checked(data: bytes, name: str) -> tuple[list[str], int]:
    """check_bif's problems and the IH rows of an uploaded file: the lines that start with
    "IH," as splitlines() cuts them (after LF, CRLF or a lone CR), counted without making a
    bytes object of every line. In a checker process for a large file (both scan the whole
    file; the simulator's own thread, which every upload's request shares, does neither)."""
    count = data.startswith(b"IH,") + data.count(b"\nIH,") + data.count(b"\rIH,")
    return check_bif(data, name), count


class InvoiceCloudSimulator:
    """IC's CloudInvoicing, CloudManagement and CloudPayments services, for tests and the demo."""

    def __init__(
        self, db_path: Path, server: SoapServer | None = None, *, base_path: str = "/portal/webservices"
    ) -> None:
        from icbridge.soap.invoice_cloud import WSDL_DIR  # the same contract the client uses

        self.db_path = Path(db_path)
        self.base_path = "/" + base_path.strip("/")
        self._own_server = server is None
        self.server = server if server is not None else SoapServer()
        self._lock = threading.RLock()
        self._to_store: list[tuple[str, str]] = []  # (biller, FileID) accepted, invoices not stored yet
        self._db = sqlite3.connect(self.db_path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        sim_pragmas(self._db)
        self._refusals: dict[str, str] = {}
        self._open_counts: dict[str, int] = {}  # biller -> open invoices; cleared by every invoice write
        # (biller, page size) -> (last page served, its last (account, invoice)): the next page is
        # read from there (keyset) instead of OFFSET, which made 500 pages of 250,000 quadratic
        self._page_ends: dict[tuple[str, int], tuple[int, str, str]] = {}
        self._late_answers: dict[str, float] = {}
        self._checkers: ProcessPoolExecutor | None = None  # started by the first large upload
        self._stopped = False
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)
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
        with self._lock:
            self._stopped = True
            if self._checkers is not None:
                self._checkers.shutdown(cancel_futures=True)
                self._checkers = None
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

    @contextmanager
    def _tx(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """The DB in a transaction. `wait`: first store the invoices of the files accepted
        but not stored yet (every reader does; the upload path itself does not, so a part is
        answered once it is checked)."""
        with self._lock:
            if wait and self._to_store:
                self._store_accepted()
            with self._db:
                yield self._db

    def _store_accepted(self) -> None:
        """Store the invoices and customers of every accepted file not stored yet, in order
        of upload (their bytes are in the uploads table)."""
        to_store, self._to_store = self._to_store, []
        for biller, file_id in to_store:
            with self._tx(wait=False) as db:
                data, received_at = db.execute(
                    "SELECT content, received_at FROM uploads WHERE file_id = ?", (file_id,)
                ).fetchone()
                entries = self._bif_invoices(_invoice_rows(data) or read_bif(data))
                self._store_invoices(db, biller, [inv for inv, _ in entries], file_id, received_at)
                self._upsert_customers_from_cr(db, biller, entries)

    # seeding and inspection (tests, demo) ---------------------------------------------------

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
        total = _money(total_amount_due)
        balance = total if balance_due is None else _money(balance_due)
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
            total = _money(inv["total_amount_due"])
            invoice_date = inv.get("invoice_date") or today
            rows.append({
                "invoice_number": inv["invoice_number"],
                "account_number": inv["account_number"],
                "invoice_date": invoice_date,
                "due_date": inv.get("due_date") or invoice_date + timedelta(days=30),
                "total": total,
                "balance": total if inv.get("balance_due") is None else _money(inv["balance_due"]),
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
                    _stamp(payment_date),
                    str(_money(payment_amount)),
                    str(_money(convenience_fee)),
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
                (biller_guid, account_number, change_type, new_value, _stamp(changed_at or datetime.now(UTC))),
            )

    def refuse_once(self, file_name: str, message: str = "Simulated refusal") -> None:
        """Fault injection: the next UploadInvoiceFile of `file_name` answers Success=false."""
        with self._lock:
            self._refusals[file_name] = message

    def answer_late_once(self, file_name: str, seconds: float) -> None:
        """Fault injection: store the next upload of `file_name`, then answer only after `seconds`."""
        with self._lock:
            self._late_answers[file_name] = seconds

    def uploads(self, biller_guid: str | None = None) -> list[dict[str, Any]]:
        """Every UploadInvoiceFile the simulator accepted or refused (bad credentials aside)."""
        sql = "SELECT * FROM uploads" + (" WHERE biller = ?" if biller_guid else "") + " ORDER BY id"
        with self._tx() as db:
            rows = db.execute(sql, (biller_guid,) if biller_guid else ()).fetchall()
        return [
            {
                "id": r["id"],
                "file_id": r["file_id"],
                "biller_guid": r["biller"],
                "file_name": r["file_name"],
                "sha256": r["sha256"],
                "size": r["size"],
                "success": bool(r["success"]),
                "message": r["message"],
                "invoices": r["invoices"],
                "received_at": datetime.fromisoformat(r["received_at"]),
                "content": r["content"],
            }
            for r in rows
        ]

    def invoices(self, biller_guid: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM invoices WHERE biller = ? ORDER BY account_number, invoice_number", (biller_guid,)
            ).fetchall()
        return [self._invoice_dict(r) for r in rows]

    def customers(self, biller_guid: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM customers WHERE biller = ? ORDER BY account_number", (biller_guid,)
            ).fetchall()
        flags = ("block_payments_cc", "block_payments_eft", "paperless", "auto_pay")
        columns = [c for c in rows[0].keys() if c != "biller"] if rows else []  # noqa: SIM118 - sqlite3.Row
        return [{k: (bool(r[k]) if k in flags else r[k]) for k in columns} for r in rows]

    # internals ------------------------------------------------------------------------------

    @staticmethod
    def _invoice_dict(r: sqlite3.Row) -> dict[str, Any]:
        def flag(v: int | None) -> bool | None:
            return None if v is None else bool(v)

        return {
            "account_number": r["account_number"],
            "invoice_number": r["invoice_number"],
            "invoice_date": date.fromisoformat(r["invoice_date"]),
            "due_date": date.fromisoformat(r["due_date"]),
            "total_amount_due": Decimal(r["total_amount_due"]),
            "balance_due": Decimal(r["balance_due"]),
            "allow_partial_payments": flag(r["allow_partial_payments"]),
            "block_credit_card": flag(r["block_credit_card"]),
            "block_ach": flag(r["block_ach"]),
            "customer_name": r["customer_name"],
            "file_id": r["file_id"],
        }

    def _auth(self, args: dict[str, Any], wait: bool = True) -> str | None:
        """The biller's stored GUID when BillerGUID + WebServiceKey match, else None."""
        guid, key = args.get("BillerGUID"), args.get("WebServiceKey")
        if not isinstance(guid, str) or not isinstance(key, str) or not guid or not key:
            return None
        with self._tx(wait) as db:
            row = db.execute("SELECT guid, key FROM billers WHERE guid = ?", (guid.strip(),)).fetchone()
        if row is None or not hmac.compare_digest(row["key"].encode(), key.encode()):
            return None
        return row["guid"]

    def _auth_or_fault(self, args: dict[str, Any]) -> str:
        biller = self._auth(args)
        if biller is None:
            raise SoapFault(INVALID_CREDENTIALS)
        return biller

    def _store_invoices(
        self,
        db: sqlite3.Connection,
        biller: str,
        invoices: list[dict[str, Any]],
        file_id: str | None,
        stamp: str | None = None,
    ) -> None:
        """`stamp`: when IC got them (an upload's receipt time; default now)."""

        def flag(v: bool | None) -> int | None:
            return None if v is None else int(v)

        self._invoices_changed()
        stamp = stamp or _stamp(datetime.now(UTC))
        db.executemany(
            "INSERT OR REPLACE INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    biller,
                    inv["invoice_number"],
                    inv["account_number"],
                    inv["invoice_date"].isoformat(),
                    inv["due_date"].isoformat(),
                    str(inv["total"]),
                    str(inv["balance"]),
                    _cents(inv["balance"]),
                    flag(inv["allow_partial"]),
                    flag(inv["block_cc"]),
                    flag(inv["block_ach"]),
                    inv["customer_name"],
                    file_id,
                    stamp,
                )
                for inv in invoices
            ],
        )

    @staticmethod
    def _bif_invoices(bif: Any) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """(invoice fields, CR row) per invoice of a BIF that passed check_bif()."""
        out = []
        for group in bif.invoices():
            ih, cr = group["IH"], group["CR"]
            total = _money(ih["TotalAmountDue"])
            balance = _money(ih["BalanceDue"]) if ih.get("BalanceDue") else total
            out.append(
                (
                    {
                        "invoice_number": ih["InvoiceNumber"],
                        "account_number": cr.get("AccountNumber", ""),
                        "invoice_date": _bif_date(ih["InvoiceDate"]),
                        "due_date": _bif_date(ih["InvoiceDueDate"]),
                        "total": total,
                        "balance": balance,
                        "allow_partial": ih.get("AllowPartialPayments") == "1"
                        if ih.get("AllowPartialPayments")
                        else None,
                        "block_cc": cr.get("BlockCreditCard") == "1" if cr.get("BlockCreditCard") else None,
                        "block_ach": cr.get("BlockACH") == "1" if cr.get("BlockACH") else None,
                        "customer_name": cr.get("CustomerName", ""),
                    },
                    cr,
                )
            )
        return out

    @staticmethod
    def _upload_result(
        success: bool, message: str, file_id: str | None = None, accepted: int = 0, rejected: int = 0
    ) -> dict[str, Any]:
        return {
            "Success": success,
            "ErrorMessage": message,
            "FileID": file_id,
            "InvoicesAccepted": accepted,
            "InvoicesRejected": rejected,
        }

    # CloudInvoicing -------------------------------------------------------------------------

    def _check_bif(self, data: bytes, name: str) -> Callable[[], tuple[list[str], int]]:
        """Start the project's own pre-upload checks and the count of its IH rows
        (_checked); the function returned waits for them. A large file is checked in a
        process of its own, meanwhile this thread goes on.

        IC is a web farm: files uploaded at once are checked at once. In this process, the
        checks of every file would take turns on one core (the regexes hold the GIL), which
        would make the simulator, not the client, what a client's concurrent uploads wait for.
        A file of CHECK_APART_BYTES or more is checked by one of two spawned processes
        (started by the first such file, stopped with the simulator); a smaller one here."""
        def here() -> tuple[list[str], int]:
            return _checked(data, name)

        if len(data) < CHECK_APART_BYTES:
            return here
        checkers = None
        with self._lock:
            for _ in range(2):  # a pool whose checker died while idle is broken: new checkers, once
                if self._stopped:  # a request still being handled as the simulator stops
                    break
                checkers = self._checkers
                if checkers is None:
                    checkers = self._checkers = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
                try:
                    with workers_may_start():  # a checker never runs the __main__ of the process that starts it
                        future = checkers.submit(_checked, data, name)
                    break
                except BrokenProcessPool:
                    self._forget_checkers(checkers)
                    checkers = None
        if checkers is None:
            return here

        def apart() -> tuple[list[str], int]:
            try:
                return future.result()
            except BrokenProcessPool:  # a checker died: this file is checked here, the next file by new ones
                with self._lock:
                    self._forget_checkers(checkers)
                return _checked(data, name)

        return apart

    def _forget_checkers(self, checkers: ProcessPoolExecutor) -> None:
        if self._checkers is checkers:
            self._checkers = None
        checkers.shutdown(wait=False)

    def _upload_invoice_file(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth(args, wait=False)
        if biller is None:
            return self._upload_result(False, INVALID_CREDENTIALS)
        name = _str(args, "FileName") or ""
        encoded = args.get("FileContent") or ""
        problems: list[str] = []
        try:
            # strict: only the base64 alphabet and its padding; SIMD, ~10x binascii on a 27 MB part
            data = pybase64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            data = b""
            problems.append("FileContent is not valid base64")
        if not name:
            problems.append("FileName is required")
        with self._lock:
            refusal = self._refusals.pop(name, None)
        if refusal:
            problems.append(refusal)
        if not data and not problems:
            problems.append("FileContent is empty")
        count = 0
        sha256 = hashlib.sha256(b"").hexdigest()
        if data:
            checked = self._check_bif(data, name or "BIF")  # a large file's checks run meanwhile
            sha256 = hashlib.sha256(data).hexdigest()
            fh_layout = registry()["FH"]
            first = re.match(rb"[^\r\n]*", data).group()
            try:
                fh = next(csv.reader([first.decode("utf-8")])) if first else []
            except UnicodeDecodeError:  # check_bif has said why
                fh = []
            found, count = checked()
            problems.extend(found)
            if fh[:1] == ["FH"] and len(fh) > fh_layout.index("BillerGuid"):
                fh_guid = fh[fh_layout.index("BillerGuid")].strip()
                if fh_guid.lower() != biller.lower():
                    problems.append(f"{name}: FH BillerGuid {fh_guid!r} is not the BillerGUID of this call")
        file_id = None if problems else str(uuid.uuid4())
        message = "; ".join(problems)
        with self._tx(wait=False) as db:  # queued in the same transaction: stored in upload order
            db.execute(
                "INSERT INTO uploads (file_id, biller, file_name, sha256, size, success, message, invoices,"
                " received_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    biller,
                    name,
                    sha256,
                    len(data),
                    int(not problems),
                    message,
                    0 if problems else count,
                    _stamp(datetime.now(UTC)),
                    data,
                ),
            )
            if file_id is not None:
                self._to_store.append((biller, file_id))
        with self._lock:
            late = self._late_answers.pop(name, 0.0)
        if late:
            time.sleep(late)  # stored, but the answer reaches the client after its timeout
        if problems:
            return self._upload_result(False, message, None, 0, count)
        return self._upload_result(True, "", file_id, count, 0)

    @staticmethod
    def _upsert_customers_from_cr(
        db: sqlite3.Connection, biller: str, entries: list[tuple[dict[str, Any], dict[str, str]]]
    ) -> None:
        """A BIF's CR rows refresh the customers; paperless/autopay are IC-side and kept."""
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0) ON CONFLICT (biller, account_number)"
            " DO UPDATE SET customer_name = excluded.customer_name, email_address = excluded.email_address,"
            " phone = excluded.phone, block_payments_cc = excluded.block_payments_cc,"
            " block_payments_eft = excluded.block_payments_eft",
            [
                (
                    biller,
                    inv["account_number"],
                    inv["customer_name"],
                    cr.get("EmailAddress", ""),
                    cr.get("Phone", ""),
                    int(bool(inv["block_cc"])),
                    int(bool(inv["block_ach"])),
                )
                for inv, cr in entries
            ],
        )

    def _invoices_changed(self) -> None:
        """Forget the cached open-invoice counts and page ends (called by every invoice write)."""
        self._open_counts.clear()
        self._page_ends.clear()

    # the invoice columns and the account's payment blocks (customer record; NULL without one)
    _INVOICE_SELECT = (
        "SELECT i.account_number, i.invoice_number, i.invoice_date, i.due_date, i.total_amount_due,"
        " i.balance_due, c.block_payments_cc, c.block_payments_eft FROM invoices i"
        " LEFT JOIN customers c ON c.biller = i.biller AND c.account_number = i.account_number"
    )

    @staticmethod
    def _invoice_node(r: sqlite3.Row | tuple[Any, ...], *, blocks: bool = False) -> dict[str, Any]:
        """An Invoice (ViewInvoiceByInvoiceNumber) or, with ``blocks``, an OpenInvoice (ListOpenInvoices)."""
        node = {
            "AccountNumber": r[0],
            "InvoiceNumber": r[1],
            "InvoiceDate": r[2],
            "DueDate": r[3],
            "TotalAmountDue": r[4],
            "BalanceDue": r[5],
        }
        if blocks:
            node["BlockPaymentsCC"] = NIL if r[6] is None else bool(r[6])
            node["BlockPaymentsEFT"] = NIL if r[7] is None else bool(r[7])
        return node

    def _view_invoice(self, args: dict[str, Any]) -> dict[str, Any] | None:
        biller = self._auth_or_fault(args)
        number = _str(args, "InvoiceNumber", required=True)
        with self._tx() as db:
            row = db.execute(
                self._INVOICE_SELECT + " WHERE i.biller = ? AND i.invoice_number = ?", (biller, number)
            ).fetchone()
        return None if row is None else self._invoice_node(row)

    def _list_open_invoices(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth_or_fault(args)
        page_number, page_size = _int(args, "PageNumber"), _int(args, "PageSize")
        if page_number < 1:
            raise SoapFault("PageNumber must be 1 or more")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SoapFault(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")
        with self._tx() as db:
            total = self._open_counts.get(biller)
            if total is None:
                total = db.execute(
                    "SELECT COUNT(*) FROM invoices WHERE biller = ? AND balance_cents != 0", (biller,)
                ).fetchone()[0]
                self._open_counts[biller] = total
            end = self._page_ends.get((biller, page_size))
            if end is not None and end[0] == page_number - 1:  # the next page: continue after the last row
                rows = db.execute(
                    self._INVOICE_SELECT + " WHERE i.biller = ? AND i.balance_cents != 0"
                    " AND (i.account_number, i.invoice_number) > (?, ?)"
                    " ORDER BY i.account_number, i.invoice_number LIMIT ?",
                    (biller, end[1], end[2], page_size),
                ).fetchall()
            else:
                rows = db.execute(
                    self._INVOICE_SELECT + " WHERE i.biller = ? AND i.balance_cents != 0"
                    " ORDER BY i.account_number, i.invoice_number LIMIT ? OFFSET ?",
                    (biller, page_size, (page_number - 1) * page_size),
                ).fetchall()
            if rows:
                self._page_ends[(biller, page_size)] = (page_number, rows[-1][0], rows[-1][1])
        return {"Invoices": [{"Invoice": self._invoice_node(r, blocks=True)} for r in rows], "TotalCount": total}

    def _update_invoice_balance(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth(args)
        if biller is None:
            return {"Success": False, "ErrorMessage": INVALID_CREDENTIALS}
        account = _str(args, "AccountNumber", required=True)
        number = _str(args, "InvoiceNumber", required=True)
        balance = _money(_decimal(args, "BalanceDue"))
        total_raw = _decimal(args, "TotalAmountDue", required=False)
        with self._tx() as db:
            row = db.execute(
                "SELECT account_number FROM invoices WHERE biller = ? AND invoice_number = ?", (biller, number)
            ).fetchone()
            if row is None:
                return {"Success": False, "ErrorMessage": f"Invoice {number} not found"}
            if row["account_number"] != account:
                return {"Success": False, "ErrorMessage": f"Invoice {number} is not on account {account}"}
            self._invoices_changed()
            db.execute(
                "UPDATE invoices SET balance_due = ?, balance_cents = ?, updated_at = ?"
                + (", total_amount_due = ?" if total_raw is not None else "")
                + " WHERE biller = ? AND invoice_number = ?",
                (
                    str(balance),
                    _cents(balance),
                    _stamp(datetime.now(UTC)),
                    *([str(_money(total_raw))] if total_raw is not None else []),
                    biller,
                    number,
                ),
            )
        return {"Success": True, "ErrorMessage": ""}

    # CloudManagement ------------------------------------------------------------------------

    def _view_customer_record(self, args: dict[str, Any]) -> dict[str, Any] | None:
        biller = self._auth_or_fault(args)
        account = _str(args, "AccountNumber", required=True)
        with self._tx() as db:
            r = db.execute(
                "SELECT * FROM customers WHERE biller = ? AND account_number = ?", (biller, account)
            ).fetchone()
        if r is None:
            return None
        return {
            "AccountNumber": r["account_number"],
            "CustomerName": r["customer_name"],
            "EmailAddress": r["email_address"],
            "Phone": r["phone"],
            "BlockPaymentsCC": bool(r["block_payments_cc"]),
            "BlockPaymentsEFT": bool(r["block_payments_eft"]),
            "Paperless": bool(r["paperless"]),
            "AutoPay": bool(r["auto_pay"]),
        }

    def _update_customer_record(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth(args)
        if biller is None:
            return {"Success": False, "ErrorMessage": INVALID_CREDENTIALS}
        account = _str(args, "AccountNumber", required=True)
        changes: dict[str, Any] = {}
        for arg, column in (("EmailAddress", "email_address"), ("Phone", "phone")):
            value = _str(args, arg)
            if value is not None:
                changes[column] = value.strip()
        for arg, column in (
            ("BlockPaymentsCC", "block_payments_cc"),
            ("BlockPaymentsEFT", "block_payments_eft"),
            ("Paperless", "paperless"),
            ("AutoPay", "auto_pay"),
        ):
            flag = _bool(args, arg)
            if flag is not None:
                changes[column] = int(flag)
        with self._tx() as db:
            found = db.execute(
                "SELECT 1 FROM customers WHERE biller = ? AND account_number = ?", (biller, account)
            ).fetchone()
            if found is None:
                return {"Success": False, "ErrorMessage": f"Account {account} not found"}
            if changes:
                # column names come from the fixed tuples above, never from the request
                assignments = ", ".join(f"{c} = ?" for c in changes)
                db.execute(
                    f"UPDATE customers SET {assignments} WHERE biller = ? AND account_number = ?",
                    (*changes.values(), biller, account),
                )
        return {"Success": True, "ErrorMessage": ""}

    def _list_change_log(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth_or_fault(args)
        start, end = _datetime(args, "FromDate"), _datetime(args, "ToDate")
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM change_log WHERE biller = ? AND changed_at >= ? AND changed_at < ?"
                " ORDER BY changed_at, id",
                (biller, _stamp(start), _stamp(end)),
            ).fetchall()
        return {
            "Changes": [
                {
                    "ChangeLogEntry": {
                        "AccountNumber": r["account_number"],
                        "ChangeType": r["change_type"],
                        "NewValue": r["new_value"],
                        "ChangedAt": datetime.fromisoformat(r["changed_at"]),
                    }
                }
                for r in rows
            ]
        }

    # CloudPayments --------------------------------------------------------------------------

    def _list_payments(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth_or_fault(args)
        start, end = _datetime(args, "FromDate"), _datetime(args, "ToDate")
        channel = (_str(args, "Channel") or "").strip()
        sql = "SELECT * FROM payments WHERE biller = ? AND payment_date >= ? AND payment_date < ?"
        params: list[Any] = [biller, _stamp(start), _stamp(end)]
        if channel:
            sql += " AND lower(channel) = lower(?)"
            params.append(channel)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY payment_date, payment_guid", params).fetchall()
        return {
            "Payments": [
                {
                    "Payment": {
                        "PaymentGUID": r["payment_guid"],
                        "AccountNumber": r["account_number"],
                        "InvoiceNumber": r["invoice_number"],
                        "PaymentDate": datetime.fromisoformat(r["payment_date"]),
                        "PaymentAmount": r["payment_amount"],
                        "ConvenienceFee": r["convenience_fee"],
                        "PaymentType": r["payment_type"],
                        "Channel": r["channel"],
                        "CashierName": r["cashier_name"],
                    }
                }
                for r in rows
            ]
        }


def _invoice_rows(data: bytes) -> BifFile | None:
    """The IH and CR rows of a BIF that passed check_bif(), as read_bif gives them (the ID
    rows, most of a BIF, are not parsed: the simulator keeps none). None when a row does
    not read whole on its own line (read_bif then reads the file)."""
    layouts = registry()
    lines = [line for line in data.decode("utf-8").split("\r\n") if line.startswith(("IH,", "CR,"))]
    rows = []
    for rec in csv.reader(lines):
        layout = layouts[rec[0]]
        if len(rec) != len(layout.fields):
            return None
        rows.append((rec[0], dict(zip(layout.names, rec, strict=True))))
    return BifFile({}, rows)
