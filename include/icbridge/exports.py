"""Files people open (Balance All CSV/XLSX, ``rejects.csv``): text that cannot run as a formula.

Why: account numbers, invoice numbers and messages come from IC and the CIS and are not ours
to trust. A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR is a live formula
(or DDE command) when Excel or LibreOffice opens the file. OWASP's recommendation ("CSV
Injection"): prepend a single quote to such a cell, and quote every cell that holds a
separator or a quote (``csv`` does that). Money and counts are numbers, never text, so a
negative difference stays ``-3.10``. XLSX text is written as string cells (never formulas:
see :func:`xlsx_text`), so it needs no quote. Machine formats (BIF, the Logis payment export)
keep their specified bytes and do not use this. No Airflow imports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

__all__ = ["FORMULA_STARTS", "rejects_csv", "safe_text", "xlsx_text"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` as a CSV text cell that a spreadsheet shows and never evaluates."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def xlsx_text(sheet: Any, value: str) -> Any:
    """An openpyxl write-only cell holding ``value`` as text, even when it starts with ``=``
    (openpyxl would otherwise store any such string as a formula). Characters XML 1.0 cannot
    hold (C0 controls but TAB, LF, CR: openpyxl's ``ILLEGAL_CHARACTERS_RE``) become U+FFFD,
    so one such character, e.g. from a gateway's error page, never fails the whole workbook."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
    cell.data_type = "s"
    return cell


def rejects_csv(rejects: Iterable[Any]) -> str:
    """``rejects.csv`` of a mapped AUS file (map-aus and the invoices DAG's artifacts): lines,
    account, bill number, reason; text cells neutralised."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["lines", "account", "bill_number", "reason"])
    for r in rejects:
        writer.writerow([" ".join(map(str, r.lines)), safe_text(r.account), safe_text(r.bill), safe_text(r.reason)])
    return buffer.getvalue()
