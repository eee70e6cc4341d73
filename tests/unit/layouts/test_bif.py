"""The BIF layout (bif.md): field registry, writer, reader, and every pre-upload check."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from icbridge.layouts.bif import ROW_TYPES, BifWriter, check_bif, clean_text, encode_row, read_bif, registry

SPEC_FIELDS = Path(__file__).resolve().parents[4] / "shared" / "specs" / "bif_fields.csv"
if not SPEC_FIELDS.exists():  # a checkout outside /work: the package copy is the same table
    SPEC_FIELDS = Path("/work/shared/specs/bif_fields.csv")
GUID = "11111111-2222-3333-4444-555555555555"
FORMAT_GUID = "5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F"


def _spec_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(SPEC_FIELDS.read_text("utf-8").splitlines()))


def _row(row_type: str, **values: str) -> list[str]:
    layout = registry()[row_type]
    row = layout.blank()
    for name, value in values.items():
        row[layout.index(name)] = value
    return row


def _invoice(n: int, amount: str) -> list[list[str]]:
    return [
        _row(
            "IH",
            RecordType="R",
            InvoiceFormatGuid=FORMAT_GUID,
            InvoiceNumber=f"B{n:04d}",
            InvoiceDate="01/15/2026",
            InvoiceDueDate="02/15/2026",
            TotalAmountDue=amount,
            AllowPartialPayments="1",
            BalanceDue=amount,
            BalanceForward="1",
            InvoiceTypeID="1",
        ),
        _row("CR", AccountNumber=f"A{n}", CustomerName=f"Customer {n}", Zip="03801"),
        _row("ID", Description="Water", LineItemTotal=amount),
        _row("ID", Description="Sewer", LineItemTotal="0.00"),
    ]


def _rows(amounts=("10.50", "-2.25", "100.00")) -> list[list[str]]:
    body = [r for n, a in enumerate(amounts) for r in _invoice(n, a)]
    total = sum((Decimal(a) for a in amounts), Decimal(0))
    fh = _row(
        "FH",
        BillerGuid=GUID,
        FileCreationDate="11/01/2026",
        InvoiceCount=str(len(amounts)),
        TotalInvoiceAmount=f"{total:.2f}",
    )
    return [fh, *body]


def _bytes(rows: list[list[str]]) -> bytes:
    return "".join(encode_row(r) for r in rows).encode("utf-8")


def _set(rows: list[list[str]], line: int, field: str, value: str) -> list[list[str]]:
    """Set a field on the row at 1-based `line`."""
    row = rows[line - 1]
    row[registry()[row[0]].index(field)] = value
    return rows


# --- registry ---------------------------------------------------------------------------


def test_registry_rows_are_rowtype_then_ascending_file_spec_id():
    layouts = registry()
    assert tuple(layouts) == ROW_TYPES
    for row_type, layout in layouts.items():
        assert layout.fields[0].name == "RowType"
        assert layout.fields[0].row_type == row_type
        ids = [f.spec_id for f in layout.fields[1:]]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        assert all(f.row_type == row_type for f in layout.fields)


def test_registry_holds_every_file_spec_id_of_the_spec():
    spec = {(r["row_type"], int(r["file_spec_id"]), r["ic_field"]) for r in _spec_rows()}
    ours = {(f.row_type, f.spec_id, f.name) for lay in registry().values() for f in lay.fields}
    assert ours == spec
    required = {(r["row_type"], r["ic_field"]) for r in _spec_rows() if r["required"] == "TRUE"}
    assert {(f.row_type, f.name) for lay in registry().values() for f in lay.fields if f.required} == required


def test_fields_356_357_are_on_cr():
    cr = registry()["CR"]
    by_id = {f.spec_id: f.name for f in cr.fields}
    assert by_id[356] == "BlockCreditCard"
    assert by_id[357] == "BlockACH"
    assert cr.names[-2:] == ("BlockCreditCard", "BlockACH")
    assert cr.fields[cr.index("BlockCreditCard")].format == "flag"
    assert all(f.spec_id not in (356, 357) for t in ("FH", "IH", "ID") for f in registry()[t].fields)


def test_row_column_counts_are_fixed():
    counts = {t: len(lay.fields) for t, lay in registry().items()}
    assert counts == {"FH": 5, "IH": 20, "CR": 13, "ID": 37}
    for t, n in counts.items():
        assert len(registry()[t].blank()) == n


# --- writer -----------------------------------------------------------------------------


def test_encode_row_quotes_only_where_needed():
    assert encode_row(["ID", "plain", ""]) == "ID,plain,\r\n"
    assert encode_row(["ID", "Smith, Jr.", ""]) == 'ID,"Smith, Jr.",\r\n'
    assert encode_row(["ID", 'John "Bud" Jones', "x"]) == 'ID,"John ""Bud"" Jones",x\r\n'
    assert encode_row(["ID", "two\nlines", "a\rb"]) == 'ID,"two\nlines","a\rb"\r\n'


def test_writer_crlf_utf8_no_bom():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    writer = BifWriter(stream)
    rows = _rows()
    writer.write(rows[0])
    writer.write_many(rows[1:])
    stream.flush()
    data = raw.getvalue()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == len(rows) == data.count(b"\n")
    assert data.endswith(b"\r\n")
    assert check_bif(data) == []


def test_writer_non_ascii_is_utf8():
    rows = _set(_rows(), 3, "CustomerName", "Chloé Müller")
    data = _bytes(rows)
    assert "Chloé Müller".encode() in data
    assert check_bif(data) == []
    assert read_bif(data).rows[1][1]["CustomerName"] == "Chloé Müller"


def test_clean_text():
    assert clean_text("  a\tb\r\nc  ") == "a b  c"
    assert clean_text("\tx\n") == "x"
    assert clean_text("plain") == "plain"
    assert clean_text("   ") == ""


# --- reader -----------------------------------------------------------------------------


def test_read_bif_round_trip():
    rows = _rows()
    _set(rows, 3, "CustomerName", 'O\'Brien, "Bud"')
    _set(rows, 4, "Description", "Water, sewer\nand trash")
    data = _bytes(rows)
    bif = read_bif(data)
    assert bif.header == dict(zip(registry()["FH"].names, rows[0], strict=True))
    assert [(t, list(v.values())) for t, v in bif.rows] == [(r[0], r) for r in rows[1:]]
    invoices = list(bif.invoices())
    assert len(invoices) == 3
    assert invoices[0]["IH"]["InvoiceNumber"] == "B0000"
    assert invoices[0]["CR"]["CustomerName"] == 'O\'Brien, "Bud"'
    assert [d["Description"] for d in invoices[0]["ID"]] == ["Water, sewer\nand trash", "Sewer"]
    assert invoices[1]["IH"]["TotalAmountDue"] == "-2.25"
    # written again, the same bytes
    again = [list(bif.header.values())] + [list(v.values()) for _, v in bif.rows]
    assert _bytes(again) == data


# --- checks: a good file, then one broken file per rule ----------------------------------


def test_good_file_passes():
    assert check_bif(_bytes(_rows()), "good.BIF") == []


def test_empty_invoice_file_passes():
    fh = _row("FH", BillerGuid=GUID, FileCreationDate="11/01/2026", InvoiceCount="0", TotalInvoiceAmount="0.00")
    assert check_bif(_bytes([fh])) == []


def _problems(rows_or_bytes) -> str:
    data = rows_or_bytes if isinstance(rows_or_bytes, bytes) else _bytes(rows_or_bytes)
    problems = check_bif(data, "x.BIF")
    assert problems, "the broken file passed the checks"
    assert all(p.startswith("x.BIF") for p in problems)
    return "\n".join(problems)


def test_fh_invoice_count_wrong():
    text = _problems(_set(_rows(), 1, "InvoiceCount", "4"))
    assert "FH InvoiceCount 4 but the file has 3 IH rows" in text
    assert "rule: FH figures" in text


def test_fh_total_wrong():
    text = _problems(_set(_rows(), 1, "TotalInvoiceAmount", "108.26"))
    assert "FH TotalInvoiceAmount 108.26 but the IH rows add up to 108.25" in text


def test_fh_total_not_an_amount():
    text = _problems(_set(_rows(), 1, "TotalInvoiceAmount", "108.250"))
    assert "TotalInvoiceAmount" in text


def test_ih_without_cr():
    rows = _rows()
    del rows[2]  # the first invoice's CR
    # named once, on the IH's line (not on each of its ID rows)
    assert _problems(rows) == "x.BIF line 2: IH not followed by its CR row (rule: row order)"


def test_ih_followed_by_ih():
    rows = _rows()
    del rows[2:5]  # the first invoice keeps only its IH; the next IH follows
    assert _problems(rows) == "x.BIF line 2: IH not followed by its CR row (rule: row order)"


def test_last_ih_without_cr():
    rows = _rows()[:-3]  # last invoice keeps only its IH, on line 10
    assert "x.BIF line 10: last IH has no CR row (rule: row order)" in _problems(rows)


def test_cr_without_ih_and_id_before_cr():
    rows = _rows()
    rows[1], rows[2] = rows[2], rows[1]
    text = _problems(rows)
    assert "CR row without an IH row just before it" in text


def test_second_fh_and_missing_fh():
    rows = _rows()
    assert "FH must be the first row" in _problems([*rows, rows[0]])
    text = _problems(rows[1:])
    assert "no FH row" in text
    assert "IH before the FH row" in text


@pytest.mark.parametrize(
    ("line", "field"),
    [(1, "BillerGuid"), (2, "InvoiceNumber"), (2, "InvoiceFormatGuid"), (3, "AccountNumber"), (3, "CustomerName")],
)
def test_required_field_empty(line, field):
    rows = _rows()
    row_type = rows[line - 1][0]
    spec_id = registry()[row_type].fields[registry()[row_type].index(field)].spec_id
    text = _problems(_set(rows, line, field, ""))
    assert f"line {line}: {row_type} {field} (FileSpecID {spec_id}) is empty (rule: required)" in text


@pytest.mark.parametrize("row_type_line", [1, 2, 3, 4])
def test_column_count(row_type_line):
    rows = _rows()
    rows[row_type_line - 1] = [*rows[row_type_line - 1], "extra"]
    row_type = rows[row_type_line - 1][0]
    n = len(registry()[row_type].fields)
    text = _problems(rows)
    assert f"line {row_type_line}: {row_type} row has {n + 1} fields, expected {n} (rule: column count)" in text
    rows[row_type_line - 1] = rows[row_type_line - 1][:-2]
    assert f"{row_type} row has {n - 1} fields" in _problems(rows)


@pytest.mark.parametrize("amount", ["10.5", "10", "1,000.00", "$10.00", "10.505", "(10.00)", "1e3"])
def test_bad_amount(amount):
    text = _problems(_set(_rows(), 2, "BalanceDue", amount))
    assert f"line 2: IH BalanceDue {amount!r} is not a valid amount (rule: amount)" in text


def test_bad_amount_in_detail_line():
    assert "ID LineItemTotal '3.1' is not a valid amount" in _problems(_set(_rows(), 4, "LineItemTotal", "3.1"))


@pytest.mark.parametrize("value", ["2026-01-15", "1/15/2026", "01/15/26", "13/01/2026"])
def test_bad_date(value):
    text = _problems(_set(_rows(), 2, "InvoiceDate", value))
    assert f"IH InvoiceDate {value!r} is not a valid date (rule: date)" in text


@pytest.mark.parametrize("value", ["02/30/2026", "02/29/2025", "04/31/2026", "00/10/2026"])
def test_impossible_date(value):
    text = _problems(_set(_rows(), 1, "FileCreationDate", value))
    assert f"FH FileCreationDate {value!r} is not a valid date" in text


def test_leap_day_is_a_date():
    assert check_bif(_bytes(_set(_rows(), 2, "InvoiceDate", "02/29/2028"))) == []


@pytest.mark.parametrize(("line", "field", "value"), [(2, "AllowPartialPayments", "Y"), (3, "BlockACH", "2")])
def test_bad_flag(line, field, value):
    text = _problems(_set(_rows(), line, field, value))
    assert f"{field} {value!r} is not a valid flag (rule: flag)" in text


def test_bad_invoice_count_format():
    assert "FH InvoiceCount '3.0' is not a valid int" in _problems(_set(_rows(), 1, "InvoiceCount", "3.0"))


def test_bom():
    text = _problems(b"\xef\xbb\xbf" + _bytes(_rows()))
    assert "line 1: file starts with a byte order mark" in text
    assert "rule: encoding" in text


def test_not_utf8():
    data = _bytes(_set(_rows(), 3, "CustomerName", "Chloé")).replace("é".encode(), "é".encode("cp1252"))
    assert "line 3: bytes are not UTF-8" in _problems(data)


def test_lf_only_line_endings():
    text = _problems(_bytes(_rows()).replace(b"\r\n", b"\n"))
    assert "every line must end in CRLF (rule: framing)" in text


def test_one_lf_only_line():
    data = _bytes(_rows())
    first_crlf = data.index(b"\r\n")
    assert "every line must end in CRLF" in _problems(data[:first_crlf] + data[first_crlf + 1 :])


def test_unknown_row_type():
    rows = _rows()
    rows.insert(3, ["XX", "what"])
    assert "line 4: unknown row type 'XX' (rule: row type)" in _problems(rows)


def test_empty_line_and_empty_file():
    data = _bytes(_rows())
    assert "empty line" in _problems(data.replace(b"\r\n", b"\r\n\r\n", 1))
    assert "file is empty" in _problems(b"")


def test_problems_are_capped():
    rows = _rows()
    for r in rows[1:]:
        if r[0] == "ID":
            r[registry()["ID"].index("LineItemTotal")] = "bad"
    problems = check_bif(_bytes(rows), "x.BIF", max_problems=2)
    assert len(problems) == 3
    assert problems[-1] == "x.BIF: and 4 more problems"
