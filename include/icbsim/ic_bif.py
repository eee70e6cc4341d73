"""What the Invoice Cloud simulator reads from an uploaded BIF: its check, its invoices, their customers.

A file passes the project's own pre-upload checks (:func:`icbridge.layouts.bif.check_bif`) or is
refused whole; a file that passed is stored as invoices (IH rows) and customer records (CR rows).
:func:`check_upload` runs in a checker process for a large file, so this module imports little.
"""

from __future__ import annotations

import csv
from datetime import date
from typing import Any

from icbridge.layouts.bif import BifFile, check_bif, registry
from icbsim.values import money


def check_upload(data: bytes, name: str) -> tuple[list[str], int]:
    """check_bif's problems and the IH rows of an uploaded file: the lines that start with
    "IH," as splitlines() cuts them (after LF, CRLF or a lone CR), counted without making a
    bytes object of every line. In a checker process for a large file (both scan the whole
    file; the simulator's own thread, which every upload's request shares, does neither)."""
    count = data.startswith(b"IH,") + data.count(b"\nIH,") + data.count(b"\rIH,")
    return check_bif(data, name), count


def bif_date(text: str) -> date:
    """A BIF date (MM/DD/YYYY)."""
    month, day, year = text.split("/")
    return date(int(year), int(month), int(day))


def bif_invoices(bif: Any) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(invoice fields, CR row) per invoice of a BIF that passed check_bif()."""
    out = []
    for group in bif.invoices():
        ih, cr = group["IH"], group["CR"]
        total = money(ih["TotalAmountDue"])
        balance = money(ih["BalanceDue"]) if ih.get("BalanceDue") else total
        out.append(
            (
                {
                    "invoice_number": ih["InvoiceNumber"],
                    "account_number": cr.get("AccountNumber", ""),
                    "invoice_date": bif_date(ih["InvoiceDate"]),
                    "due_date": bif_date(ih["InvoiceDueDate"]),
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


def invoice_rows(data: bytes) -> BifFile | None:
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
