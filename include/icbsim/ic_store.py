"""The Invoice Cloud simulator's state: billers, uploads, invoices, customers, payments, change log in SQLite.

:class:`IcStore` is what the simulator's SOAP methods (:mod:`icbsim.ic_uploads`,
:mod:`icbsim.ic_methods`) and its seeding share: one connection under one lock, the writes of
invoices and customers, the credential check, and what tests read back. An accepted upload's
invoices are stored by the next read of the state (``_tx``), not by the upload's answer.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.layouts.bif import read_bif
from icbsim.ic_bif import bif_invoices, invoice_rows
from icbsim.soapserver import SoapFault
from icbsim.values import cents, sim_pragmas, stamp

INVALID_CREDENTIALS = "Invalid credentials"

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


class IcStore:
    """The simulator's SQLite state and the operations on it that its methods and seeding share."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        self._to_store: list[tuple[str, str]] = []  # (biller, FileID) accepted, invoices not stored yet
        self._db = sqlite3.connect(self.db_path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        sim_pragmas(self._db)
        self._open_counts: dict[str, int] = {}  # biller -> open invoices; cleared by every invoice write
        # (biller, page size) -> (last page served, its last (account, invoice)): the next page is
        # read from there (keyset) instead of OFFSET, which made 500 pages of 250,000 quadratic
        self._page_ends: dict[tuple[str, int], tuple[int, str, str]] = {}
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)

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
                entries = bif_invoices(invoice_rows(data) or read_bif(data))
                self._store_invoices(db, biller, [inv for inv, _ in entries], file_id, received_at)
                self._upsert_customers_from_cr(db, biller, entries)

    # inspection (tests, demo) ---------------------------------------------------------------

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
        received_at: str | None = None,
    ) -> None:
        """`received_at`: when IC got them (an upload's receipt time, a :func:`stamp`; default now)."""

        def flag(v: bool | None) -> int | None:
            return None if v is None else int(v)

        self._invoices_changed()
        received_at = received_at or stamp(datetime.now(UTC))
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
                    cents(inv["balance"]),
                    flag(inv["allow_partial"]),
                    flag(inv["block_cc"]),
                    flag(inv["block_ach"]),
                    inv["customer_name"],
                    file_id,
                    received_at,
                )
                for inv in invoices
            ],
        )

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
