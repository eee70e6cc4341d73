"""Harris AUS (CIS Infinity) simulator over real HTTP, state in SQLite (fields assumed, seed 004).

Serves soap/wsdl/AusCis.wsdl on the shared SoapServer. ResponseCode convention (assumed,
shared with icbridge.soap.aus and docs/cis-services.md): 0 success, 1 "Account not found",
2 "Invalid credentials", 3 "Invalid request: ...", 4 "Bill not found", 9 other (injected).

* GetAccountData answers the account's numbers, Balance, PastDue, CashOnly and EmailAddress.
* AddPendingPayment records a pending payment (balance unchanged: it is pending) and answers
  a PendingPaymentID; repeats are recorded too.
* UpdatePaymentPlan sets autopay; UpdateCisLinkTableEBillAndLinkRegistration sets paperless
  and, when EmailAddress is not empty, the email (two changes).
* RetrieveBillPrintImageV2 answers the bill's stored bytes: a generated PDF unless a test
  stored something else (``add_bill(..., content=b"...")``) or set the ``non_pdf`` fault.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.masking import mask_account
from icbridge.soap.aus import WSDL
from icbsim.cis import CODE_BILL_NOT_FOUND, CODE_INVALID, CisSimulator, Endpoint, Refusal, make_pdf
from icbsim.values import arg_bool, arg_datetime, arg_decimal, arg_str, money

__all__ = ["AusSimulator"]

_HEAD = (("ResponseCode", 0), ("ResponseMessage", None))
_RESULT_FIELDS: dict[str, tuple[tuple[str, Any], ...]] = {
    "GetAccountData": _HEAD
    + (
        ("AccountNumber", None),
        ("CustomerNumber", None),
        ("LocationNumber", None),
        ("Balance", Decimal(0)),
        ("PastDue", Decimal(0)),
        ("CashOnly", False),
        ("EmailAddress", None),
    ),
    "AddPendingPayment": (*_HEAD, ("PendingPaymentID", None)),
    "RetrieveBillPrintImageV2": (*_HEAD, ("PdfContent", None)),
}


def _flag(args: dict[str, Any], name: str) -> bool:
    value = arg_bool(args, name)
    if value is None:
        raise Refusal(CODE_INVALID, f"Invalid request: {name} is required")
    return value


class AusSimulator(CisSimulator):
    """AUS web service for tests and the demo; see the module docstring."""

    WSDL: Path = WSDL
    SERVICE_FILE = "AusCisService.asmx"
    KEY_FIELDS = ("WebServiceKey",)
    default_base_path = "/aus"

    def handlers(self) -> Mapping[str, Callable[[Endpoint, dict[str, Any]], Mapping[str, Any]]]:
        return {
            "GetAccountData": self._get_account_data,
            "AddPendingPayment": self._add_pending_payment,
            "UpdatePaymentPlan": self._update_payment_plan,
            "UpdateCisLinkTableEBillAndLinkRegistration": self._update_ebill,
            "RetrieveBillPrintImageV2": self._retrieve_bill,
        }

    def result(self, method: str, code: int, message: str, **values: Any) -> dict[str, Any]:
        values = {"ResponseCode": code, "ResponseMessage": message, **values}
        return {name: values.get(name, default) for name, default in _RESULT_FIELDS.get(method, _HEAD)}

    def add_bill(self, biller: str, account_number: str, bill_number: str, content: bytes | None = None) -> bytes:
        """Store a bill image (None: a generated one-page PDF); returns the stored bytes."""
        if content is None:
            content = make_pdf(f"Bill {bill_number} - account {mask_account(account_number)}")
        data = content
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO bills VALUES (?, ?, ?, ?)", (biller, account_number, bill_number, data))
        return data

    def _get_account_data(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            assert row is not None
            return {
                "AccountNumber": row["account_number"],
                "CustomerNumber": row["customer_number"],
                "LocationNumber": row["location_number"],
                "Balance": Decimal(row["balance"]),
                "PastDue": Decimal(row["past_due"]),
                "CashOnly": bool(row["cash_only"]),
                "EmailAddress": row["email"],
            }

        return self.serve(endpoint, "GetAccountData", args, apply)

    def _add_pending_payment(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        when = arg_datetime(args, "PaymentDate")
        amount = money(arg_decimal(args, "PaymentAmount"))
        fee = money(arg_decimal(args, "ConvenienceFee"))

        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            if amount <= 0 or fee < 0:
                raise Refusal(CODE_INVALID, "Invalid request: PaymentAmount must be > 0 and ConvenienceFee >= 0")
            payment_id = self.record_payment(
                db,
                endpoint,
                "AddPendingPayment",
                account,
                when,
                amount,
                fee,
                (arg_str(args, "PaymentType") or "").strip(),
                (arg_str(args, "PaymentReference") or "").strip(),
            )
            return {"PendingPaymentID": f"PP{payment_id:08d}"}

        return self.serve(endpoint, "AddPendingPayment", args, apply)

    def _update_payment_plan(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            self.record_change(db, endpoint, "UpdatePaymentPlan", account, "autopay", _flag(args, "AutoPayEnrolled"))
            return {}

        return self.serve(endpoint, "UpdatePaymentPlan", args, apply)

    def _update_ebill(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        method = "UpdateCisLinkTableEBillAndLinkRegistration"

        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            self.record_change(db, endpoint, method, account, "paperless", _flag(args, "EBillEnrolled"))
            email = (arg_str(args, "EmailAddress") or "").strip()
            if email:
                self.record_change(db, endpoint, method, account, "email", email)
            return {}

        return self.serve(endpoint, method, args, apply)

    def _retrieve_bill(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        bill_number = (arg_str(args, "BillNumber") or "").strip()

        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            bill = db.execute(
                "SELECT content FROM bills WHERE biller = ? AND account_number = ? AND bill_number = ?",
                (endpoint.biller, account, bill_number),
            ).fetchone()
            if bill is None:
                raise Refusal(CODE_BILL_NOT_FOUND, "Bill not found")
            return {"PdfContent": bytes(bill["content"])}

        return self.serve(endpoint, "RetrieveBillPrintImageV2", args, apply)
