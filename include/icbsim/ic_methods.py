"""The Invoice Cloud simulator's SOAP methods other than UploadInvoiceFile: invoices, customers, payments.

CloudInvoicing (ViewInvoiceByInvoiceNumber, ListOpenInvoices, UpdateInvoiceBalance),
CloudManagement (ViewCustomerRecord, UpdateCustomerRecord, ListChangeLog) and CloudPayments
(ListPayments), answered from :class:`~icbsim.ic_store.IcStore`; the behaviour is described
in :mod:`icbsim.invoice_cloud`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from icbsim.ic_store import INVALID_CREDENTIALS, IcStore
from icbsim.soapserver import NIL, SoapFault
from icbsim.values import arg_bool, arg_datetime, arg_decimal, arg_int, arg_str, cents, money, stamp

MAX_PAGE_SIZE = 1000


class IcMethods(IcStore):
    """The view, list and update methods of the three IC services."""

    # CloudInvoicing -------------------------------------------------------------------------

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
        number = arg_str(args, "InvoiceNumber", required=True)
        with self._tx() as db:
            row = db.execute(
                self._INVOICE_SELECT + " WHERE i.biller = ? AND i.invoice_number = ?", (biller, number)
            ).fetchone()
        return None if row is None else self._invoice_node(row)

    def _list_open_invoices(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth_or_fault(args)
        page_number, page_size = arg_int(args, "PageNumber"), arg_int(args, "PageSize")
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
        account = arg_str(args, "AccountNumber", required=True)
        number = arg_str(args, "InvoiceNumber", required=True)
        balance = money(arg_decimal(args, "BalanceDue"))
        total_raw = arg_decimal(args, "TotalAmountDue", required=False)
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
                    cents(balance),
                    stamp(datetime.now(UTC)),
                    *([str(money(total_raw))] if total_raw is not None else []),
                    biller,
                    number,
                ),
            )
        return {"Success": True, "ErrorMessage": ""}

    # CloudManagement ------------------------------------------------------------------------

    def _view_customer_record(self, args: dict[str, Any]) -> dict[str, Any] | None:
        biller = self._auth_or_fault(args)
        account = arg_str(args, "AccountNumber", required=True)
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
        account = arg_str(args, "AccountNumber", required=True)
        changes: dict[str, Any] = {}
        for arg, column in (("EmailAddress", "email_address"), ("Phone", "phone")):
            value = arg_str(args, arg)
            if value is not None:
                changes[column] = value.strip()
        for arg, column in (
            ("BlockPaymentsCC", "block_payments_cc"),
            ("BlockPaymentsEFT", "block_payments_eft"),
            ("Paperless", "paperless"),
            ("AutoPay", "auto_pay"),
        ):
            flag = arg_bool(args, arg)
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
        start, end = arg_datetime(args, "FromDate"), arg_datetime(args, "ToDate")
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM change_log WHERE biller = ? AND changed_at >= ? AND changed_at < ?"
                " ORDER BY changed_at, id",
                (biller, stamp(start), stamp(end)),
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
        start, end = arg_datetime(args, "FromDate"), arg_datetime(args, "ToDate")
        channel = (arg_str(args, "Channel") or "").strip()
        sql = "SELECT * FROM payments WHERE biller = ? AND payment_date >= ? AND payment_date < ?"
        params: list[Any] = [biller, stamp(start), stamp(end)]
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
