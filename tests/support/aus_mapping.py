"""Small AUS files and how a test maps one (tests of the mapping and of the IC uploads share them):
one distinct value per column (``BASE``), bills of n lines, the bytes of a file, and
``run``: map_aus on them, every BIF written checked and read back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from icbridge.layouts.bif import BifFile, check_bif, read_bif
from icbridge.mapping.aus_to_bif import InvoiceSettings, MapResult, map_aus
from icbsim.aus_files import COLUMNS, trailer_for

NAME = "123_20261101_UB.TXT"
DAY = date(2026, 11, 1)
GUID = "11111111-2222-3333-4444-555555555555"
FORMAT_GUID = "5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F"
SETTINGS = InvoiceSettings(bid="123", biller_guid=GUID, invoice_format_guid=FORMAT_GUID, invoice_type_id="7")

# one value per column, each distinct, so every target can be told apart
BASE = {
    "BID": "123",
    "AccountNumber": "0012345-01",
    "CustomerNumber": "C-77",
    "LocationNumber": "L-88",
    "BillNumber": "B0001",
    "BillDate": "01/15/2026",
    "DueDate": "02/15/2026",
    "CustomerName": "Ana García",
    "MailAddress1": "1 Main St",
    "MailAddress2": "Apt 2",
    "MailCity": "Portsmouth",
    "MailState": "NH",
    "MailZip": "03801",
    "Phone": "(555) 123-4567",
    "Email": "ana@example.com",
    "AmountDue": "100.5",
    "AmountDueAfterDueDate": "105",
    "DeferredBeginDate": "03/01/2026",
    "DeferredEndDate": "04/30/2026",
    "PaymentsReceived": "20.1",
    "DraftCustomer": "Y",
    "PastDueAmount": "-3.5",
    "AutoPayMessage": "Paid by autopay",
    "CashOnlyCC": "N",
    "CashOnlyACH": "y",
    "LineNumber": "1",
    "ServiceDescription": "Water",
    "LineAmount": "60.25",
    "LinePreviousBalance": "1.5",
    "ServiceAddress": "9 Elm St",
    "GroupCode": "WA",
    "IncomeCenter": "IC1",
    "ParcelNumber": "P-9",
    "GroupPreviousBalance": "7",
    "MeterNumber": "M1",
    "PrevReadDate": "01/01/2026",
    "PrevReading": "1000.5",
    "CurrReadDate": "01/28/2026",
    "CurrReading": "1100",
    "Usage": "99.5",
    "Estimated": "Y",
    "ChangedOut": "n",
}
assert list(BASE) == COLUMNS


def row(**values: str) -> dict[str, str]:
    return {**BASE, **values}


def bill(account: str, number: str = "", lines: int = 1, amount: str = "10.00", **values: str) -> list[dict]:
    """The detail lines of one bill, LineNumber 1..lines, one meter each."""
    number = number or f"B-{account}"
    return [
        row(
            AccountNumber=account, BillNumber=number, AmountDue=amount, LineNumber=str(n), MeterNumber=f"M{n}", **values
        )
        for n in range(1, lines + 1)
    ]


def bills(count: int, lines: int = 1) -> list[dict]:
    return [r for n in range(count) for r in bill(f"A{n:03d}", lines=lines, amount=f"{n + 1}.25")]


def encode(
    rows: list[dict],
    *,
    header: list[str] | None = None,
    columns: list[str] | None = None,
    trailer: str | None = None,
    newline: str = "\r\n",
    encoding: str = "cp1252",
) -> bytes:
    """An AUS file: header (names as written), the rows' `columns` values, trailer."""
    columns = columns or COLUMNS
    header = header or columns
    lines = ["|".join(header)] + ["|".join(r.get(c, "") for c in columns) for r in rows]
    lines.append(trailer if trailer is not None else trailer_for(rows))
    text = newline.join(lines) + newline
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return text.encode(encoding)


@dataclass
class Mapped:
    result: MapResult
    bifs: list[BifFile]
    raw: list[bytes]

    @property
    def invoices(self) -> list[dict]:
        return [inv for b in self.bifs for inv in b.invoices()]

    @property
    def invoice(self) -> dict:
        (only,) = self.invoices
        return only

    def reasons(self) -> list[str]:
        return [r.reason for r in self.result.rejects]


def run(tmp_path: Path, rows_or_data, settings: InvoiceSettings = SETTINGS, name: str = NAME, **kw) -> Mapped:
    data = rows_or_data if isinstance(rows_or_data, bytes) else encode(rows_or_data)
    out = tmp_path / "out"
    result = map_aus(data, name, settings, out, DAY, **kw)
    raw = [p.path.read_bytes() for p in result.bifs]
    for part, blob in zip(result.bifs, raw, strict=True):
        assert part.path.parent == out
        assert check_bif(blob, part.name) == [], "a written BIF fails the pre-upload checks"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.bifs), "stray files in out_dir"
    return Mapped(result, [read_bif(b) for b in raw], raw)


def assert_same_output(a: MapResult, b: MapResult) -> None:
    assert [(p.name, p.invoices, p.total, p.sha256) for p in a.bifs] == [
        (p.name, p.invoices, p.total, p.sha256) for p in b.bifs
    ]
    for x, y in zip(a.bifs, b.bifs, strict=True):
        assert x.path.read_bytes() == y.path.read_bytes()
    assert a.rejects == b.rejects
    assert a.warnings == b.warnings and a.warning_counts == b.warning_counts
    assert a.summary() == b.summary()
