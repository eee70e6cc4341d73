"""The BIF's fast proof: one RE2 match that shows a file (or a chunk of whole invoices)
certainly passes every rule of check_bif, so the record-by-record check runs only on what
it cannot prove. Same answers as bif.check_bif's record loop (tests/unit/layouts/test_bif_fast_check.py).
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal, InvalidOperation
from functools import cache

import re2

from icbridge.layouts.bif_registry import KIND_PATTERN, RowLayout, registry
from icbridge.layouts.re2_adapter import as_re2

# --------------------------------------------------------------------------- fast path
# A file that passes is the common case, and proving that takes one regex over the whole
# text (C speed) instead of a csv record loop in Python. The whole-file pattern accepts
# only what the record loop accepts (it is stricter: a quoted formatted field, a 29 February
# or a quoted CR/LF are left to the loop), so whatever it does not accept is checked by
# _check_records, which names the problems. The result is the same either way.

# any value: plain, or quoted; never a C0 control character (CR, LF and TAB included): a file
# the pattern accepts has no line break but its rows' CRLF and no control character
_FREE = r'(?:[^,"\x00-\x1f]*+|"(?:[^"\x00-\x1f]|"")*+")'
_FILLED = r'(?:[^,"\x00-\x1f]++|"(?:[^"\x00-\x1f]|"")++")'  # a value that is not empty
# dates that exist in every year 0001-9999: days 01-28, 29-30 except February, 31 in long
# months (29 February goes to the record loop, which asks the calendar)
_SAFE_DATE = (
    r"(?:(?:0[1-9]|1[0-2])/(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])/(?:29|30)|(?:0[13578]|1[02])/31)"
    r"/(?!0000)\d{4}"
)
_FAST_KIND = {**KIND_PATTERN, "date": _SAFE_DATE}


def row_pattern(layout: RowLayout) -> str:
    """One row of this type, CRLF included: RowType, then each field by its rules."""
    parts = [re.escape(layout.row_type)]
    for f in layout.fields[1:]:
        if f.format:
            parts.append(f"(?:{_FAST_KIND[f.format]})" + ("" if f.required else "?"))
        else:
            parts.append(_FILLED if f.required else _FREE)
    return ",".join(parts) + r"\r\n"


@cache
def _whole_file_pattern() -> re2._Regexp:
    """The shape of a good BIF, as UTF-8 bytes (FH, then per invoice IH, CR, ID...), compiled
    by RE2 (see as_re2). Its \\d is ASCII only: a file with other digits is left to the
    record loop, which gives the same answer more slowly."""
    rows = {t: row_pattern(lay) for t, lay in registry().items()}
    return as_re2(f"{rows['FH']}(?:{rows['IH']}{rows['CR']}(?:{rows['ID']})*+)*+")


def passes_whole(data: bytes) -> bool:
    """Whether the file (UTF-8) certainly passes every check of check_bif (False: not known)."""
    if _whole_file_pattern().fullmatch(data) is None:
        return False
    _, _, totals = _invoice_patterns()  # every IH row of such a file follows a line break
    amounts = [a.decode("ascii") for a in totals.findall(data)]
    return _fh_adds_up(data[: data.index(b"\r\n")].decode("utf-8"), amounts)


def _fh_adds_up(fh_line: str, amounts: list[str]) -> bool:
    """Whether the FH row's InvoiceCount and TotalInvoiceAmount are the recount and the sum
    of these IH TotalAmountDue values."""
    fh_layout = registry()["FH"]
    fh = next(csv.reader([fh_line]))
    if fh[fh_layout.index("InvoiceCount")] != str(len(amounts)):
        return False
    try:
        fh_total = Decimal(fh[fh_layout.index("TotalInvoiceAmount")])
    except InvalidOperation:
        return False
    return fh_total == sum((Decimal(a) for a in amounts if a), Decimal(0))


# The same proof in pieces, for a writer that builds a BIF from chunks of whole invoices
# (the mapping's workers): each chunk's rows are proven where they were built, and the FH
# row against the chunks' totals. A BIF made of an FH row and chunks that pass is one that
# passes_whole accepts (its pattern is the FH row, then invoices, each on whole lines), so
# check_bif would return no problems; whatever is not proven goes through check_bif.


@cache
def _invoice_patterns() -> tuple[re.Pattern, re2._Regexp, re.Pattern]:
    """As bytes (the chunks are UTF-8; ASCII-only \\d makes them at most stricter): the FH
    row, a run of whole invoices (compiled by RE2, see as_re2), and the IH TotalAmountDue
    values in such a run."""
    rows = {t: row_pattern(lay) for t, lay in registry().items()}
    fh = re.compile(rows["FH"].encode())
    invoices = as_re2(f"(?:{rows['IH']}{rows['CR']}(?:{rows['ID']})*+)*+")
    before = registry()["IH"].index("TotalAmountDue") - 1
    totals = re.compile(f"\nIH(?:,{_FREE}){{{before}}},({KIND_PATTERN['amount']})?(?=[,\r])".encode())
    return fh, invoices, totals


def invoice_totals(chunk: bytes) -> list[str] | None:
    """The IH TotalAmountDue values of a chunk of whole invoices (IH, CR, ID rows; no FH)
    whose rows certainly pass check_bif's row rules; None when that is not known."""
    _, invoices, totals = _invoice_patterns()
    if invoices.fullmatch(chunk) is None:
        return None
    # after a line break, as in passes_whole: a literal start the engine can search for
    return [a.decode("ascii") for a in totals.findall(b"\n" + chunk)]


def fh_passes(fh_row: bytes, totals: list[str]) -> bool:
    """Whether a BIF of this FH row (CRLF included) followed by proven chunks whose
    invoice_totals are `totals` passes check_bif."""
    fh, _, _ = _invoice_patterns()
    return fh.fullmatch(fh_row) is not None and _fh_adds_up(fh_row.decode("utf-8")[:-2], totals)
