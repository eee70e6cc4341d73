"""AUS IC Daily Export -> BIF: one test per rule of aus-ic-daily-export.md.

Every test maps a small hand-made file with map_aus and reads the BIF back with read_bif,
so what is asserted is what Invoice Cloud would receive.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import random
import types
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from icbridge.layouts.aus import FileRejected, IncompleteFile, columns, read_aus
from icbridge.layouts.bif import check_bif, encode_row, read_bif, registry
from icbridge.mapping.aus_to_bif import InvoiceSettings, MapStats, map_aus
from icbridge.mapping.bills import BillMapper
from icbridge.mapping.tables import has_edge_spaces
from icbsim import aus_files
from icbsim.aus_files import COLUMNS, trailer_for
from tests.support.aus_mapping import (
    DAY,
    FORMAT_GUID,
    GUID,
    NAME,
    SETTINGS,
    assert_same_output,
    bill,
    bills,
    encode,
    row,
    run,
)

SAMPLE = Path("/work/shared/specs/samples/123_20261101_UB.TXT")
MULTI = dataclasses.replace(SETTINGS, multiple_meters=True)
REQUIRED = {c.name for c in columns() if c.required}
LENIENT = dataclasses.replace(SETTINGS, reject_threshold_pct=100)  # small files with a reject in them

def rejected(tmp_path: Path, rows_or_data, settings: InvoiceSettings = SETTINGS, name: str = NAME) -> FileRejected:
    data = rows_or_data if isinstance(rows_or_data, bytes) else encode(rows_or_data)
    out = tmp_path / "out"
    with pytest.raises(FileRejected) as info:
        map_aus(data, name, settings, out, DAY, workers=1)
    exc = info.value
    assert exc.file == name
    assert name in str(exc) and f"(rule: {exc.rule})" in str(exc)
    if exc.line:
        assert f"line {exc.line}:" in str(exc)
    leftovers = list(out.iterdir()) if out.exists() else []
    assert leftovers == [], f"a rejected file left {leftovers}"
    return exc


def expected(row_type: str, **values: str) -> dict[str, str]:
    layout = registry()[row_type]
    out = dict.fromkeys(layout.names, "")
    out["RowType"] = row_type
    for k, v in values.items():
        assert k in out, k
        out[k] = v
    return out


def test_required_columns_are_the_specs():
    spec = (
        "BID AccountNumber CustomerNumber LocationNumber BillNumber BillDate DueDate CustomerName AmountDue LineNumber"
    )
    assert set(spec.split()) == REQUIRED


# --- every column's target, the constants --------------------------------------------------


def test_every_column_target_and_the_constants(tmp_path):
    m = run(tmp_path, [row()])
    inv = m.invoice
    assert inv["IH"] == expected(
        "IH",
        RecordType="R",
        InvoiceFormatGuid=FORMAT_GUID,
        InvoiceNumber="B0001",
        InvoiceDate="01/15/2026",
        InvoiceDueDate="02/15/2026",
        TotalAmountDue="100.50",
        AllowPartialPayments="1",
        Custom1="105.00",
        Custom2="03/01/2026",
        Custom3="04/30/2026",
        Custom4="20.10",
        Custom5="1",
        Custom6="-3.50",
        BalanceDue="100.50",
        Custom80="Paid by autopay",
        BalanceForward="1",
        InvoiceTypeID="7",
    )
    assert inv["CR"] == expected(
        "CR",
        AccountNumber="0012345-01",
        CustomerName="Ana García",
        Address1="1 Main St",
        Address2="Apt 2",
        City="Portsmouth",
        State="NH",
        Zip="03801",
        Phone="5551234567",
        EmailAddress="ana@example.com",
        RegistrationValue="5551234567",
        BlockCreditCard="0",
        BlockACH="1",
    )
    assert inv["ID"] == [
        expected(
            "ID",
            Description="Water",
            LineItemTotal="60.25",
            CustomField1="1.50",
            CustomField2="9 Elm St",
            CustomField3="WA",
            CustomField4="IC1",
            CustomField5="P-9",
            CustomField6="7.00",
            CustomField10="01/01/2026",
            CustomField11="1000.5",
            CustomField20="01/28/2026",
            CustomField21="1100",
            CustomField22="99.5",
            CustomField23="1",
            CustomField24="0",
            CustomField30="M1",
        )
    ]
    assert m.bifs[0].header == expected(
        "FH", BillerGuid=GUID, FileCreationDate="11/01/2026", InvoiceCount="1", TotalInvoiceAmount="100.50"
    )
    assert m.result.warnings == [] and m.result.rejects == [] and m.result.unknown_columns == []


def test_constants_come_from_settings(tmp_path):
    settings = dataclasses.replace(
        SETTINGS,
        biller_guid="AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
        invoice_format_guid="1918BF19-973B-4930-800E-2005C652C62A",
        invoice_type_id="42",
    )
    m = run(tmp_path, [row()], settings)
    assert m.bifs[0].header["BillerGuid"] == "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
    assert m.invoice["IH"]["InvoiceFormatGuid"] == "1918BF19-973B-4930-800E-2005C652C62A"
    assert m.invoice["IH"]["InvoiceTypeID"] == "42"


def test_optional_columns_blank_give_blank_fields(tmp_path):
    optional = [c for c in COLUMNS if c not in REQUIRED]
    m = run(tmp_path, [row(**dict.fromkeys(optional, ""))])
    inv = m.invoice
    ih = {k: v for k, v in inv["IH"].items() if v}
    assert set(ih) == {
        "RowType",
        "RecordType",
        "InvoiceFormatGuid",
        "InvoiceNumber",
        "InvoiceDate",
        "InvoiceDueDate",
        "TotalAmountDue",
        "AllowPartialPayments",
        "BalanceDue",
        "BalanceForward",
        "InvoiceTypeID",
    }
    assert {k for k, v in inv["CR"].items() if v} == {"RowType", "AccountNumber", "CustomerName"}
    assert inv["ID"] == [expected("ID")]
    assert m.result.warnings == []


def test_optional_columns_may_be_absent_from_the_header(tmp_path):
    cols = [c for c in COLUMNS if c in REQUIRED]
    m = run(tmp_path, encode([row()], columns=cols))
    assert m.invoice["IH"]["TotalAmountDue"] == "100.50"
    assert m.invoice["ID"] == [expected("ID")]


# --- value rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "written"),
    [
        ("5", "5.00"),
        ("5.1", "5.10"),
        ("5.10", "5.10"),
        ("-0.5", "-0.50"),
        ("0", "0.00"),
        ("007.25", "7.25"),
        ("-12", "-12.00"),
        ("1234567.89", "1234567.89"),
    ],
)
def test_money_is_written_with_two_decimals(tmp_path, source, written):
    m = run(
        tmp_path,
        [
            row(
                AmountDue=source,
                AmountDueAfterDueDate=source,
                PaymentsReceived=source,
                PastDueAmount=source,
                LineAmount=source,
                LinePreviousBalance=source,
                GroupPreviousBalance=source,
            )
        ],
    )
    ih, d = m.invoice["IH"], m.invoice["ID"][0]
    assert [ih[f] for f in ("TotalAmountDue", "BalanceDue", "Custom1", "Custom4", "Custom6")] == [written] * 5
    assert [d[f] for f in ("LineItemTotal", "CustomField1", "CustomField6")] == [written] * 3
    assert m.bifs[0].header["TotalInvoiceAmount"] == written


def test_amount_due_zero_or_negative_is_an_invoice(tmp_path):
    m = run(tmp_path, bill("A", amount="0") + bill("B", amount="-25.5"))
    assert [i["IH"]["TotalAmountDue"] for i in m.invoices] == ["0.00", "-25.50"]
    assert m.bifs[0].header["TotalInvoiceAmount"] == "-25.50"


@pytest.mark.parametrize(("source", "written"), [("Y", "1"), ("y", "1"), ("N", "0"), ("n", "0"), ("", "")])
def test_yes_no_flags(tmp_path, source, written):
    m = run(
        tmp_path,
        [row(DraftCustomer=source, CashOnlyCC=source, CashOnlyACH=source, Estimated=source, ChangedOut=source)],
    )
    inv = m.invoice
    assert inv["IH"]["Custom5"] == written
    assert inv["CR"]["BlockCreditCard"] == written and inv["CR"]["BlockACH"] == written
    assert inv["ID"][0]["CustomField23"] == written and inv["ID"][0]["CustomField24"] == written


@pytest.mark.parametrize("column", ["DraftCustomer", "CashOnlyCC", "CashOnlyACH", "Estimated", "ChangedOut"])
@pytest.mark.parametrize("value", ["X", "Yes", "1"])
def test_yes_no_bad_value_rejects_the_bill(tmp_path, column, value):
    m = run(tmp_path, bills(40)[:5] + [row(AccountNumber="BAD", BillNumber="B-BAD", **{column: value})] + bills(40)[5:])
    assert len(m.invoices) == 40
    (reject,) = m.result.rejects
    assert (reject.account, reject.bill, reject.lines) == ("BAD", "B-BAD", [7])
    assert column in reject.reason and f"{value!r} is not Y or N" in reject.reason


@pytest.mark.parametrize("phone", ["(555) 123-4567", "555.123.4567", "555-123-4567", "5551234567", "555 123 4567"])
def test_phone_ten_digits_into_phone_and_registration_value(tmp_path, phone):
    m = run(tmp_path, [row(Phone=phone)])
    cr = m.invoice["CR"]
    assert cr["Phone"] == cr["RegistrationValue"] == "5551234567"
    assert m.result.warnings == []


@pytest.mark.parametrize("phone", ["123-4567", "1-555-123-4567", "+1 (555) 123-4567", "555-123-456", "call me"])
def test_phone_not_ten_digits_is_blank_and_warned(tmp_path, phone):
    m = run(tmp_path, [row(Phone=phone)])
    cr = m.invoice["CR"]
    assert cr["Phone"] == cr["RegistrationValue"] == ""
    assert m.result.rejects == []
    assert m.result.warning_counts == {"Phone invalid, left blank": 1}
    assert m.result.warnings == [
        {"line": 2, "account": "0012345-01", "bill": "B0001", "column": "Phone", "reason": "Phone invalid, left blank"}
    ]


@pytest.mark.parametrize("email", ["not-an-email", "ana@example", "ana @example.com", "a@@example.com", "a@b,c.com"])
def test_invalid_email_is_blank_and_warned(tmp_path, email):
    m = run(tmp_path, [row(Email=email)])
    assert m.invoice["CR"]["EmailAddress"] == ""
    assert m.result.warning_counts == {"Email invalid, left blank": 1}
    assert m.result.warnings[0]["column"] == "Email" and m.result.warnings[0]["line"] == 2


def test_valid_email_is_kept(tmp_path):
    m = run(tmp_path, [row(Email="First.Last+bills@sub.example.org")])
    assert m.invoice["CR"]["EmailAddress"] == "First.Last+bills@sub.example.org"


def test_a_warning_per_bill_not_per_line(tmp_path):
    m = run(tmp_path, bill("A", lines=3, Email="nope", Phone="12") + bill("B", Email="nope"))
    assert m.result.warning_counts == {"Email invalid, left blank": 2, "Phone invalid, left blank": 1}
    assert [(w["line"], w["column"]) for w in m.result.warnings] == [(2, "Phone"), (2, "Email"), (5, "Email")]


@pytest.mark.parametrize(
    ("zip_code", "written"), [("03801", "03801"), ("038011234", "03801-1234"), ("03801-1234", "03801-1234")]
)
def test_zip_five_or_nine_digits_dash_optional(tmp_path, zip_code, written):
    m = run(tmp_path, [row(MailZip=zip_code)])
    assert m.invoice["CR"]["Zip"] == written
    assert m.result.warnings == []


@pytest.mark.parametrize("zip_code", ["3801", "03801-12", "0380112345", "ABCDE"])
def test_zip_malformed_is_blank_and_warned(tmp_path, zip_code):
    m = run(tmp_path, [row(MailZip=zip_code)])
    assert m.invoice["CR"]["Zip"] == ""
    assert m.result.warning_counts == {"MailZip invalid, left blank": 1}


def test_leading_zeros_are_data(tmp_path):
    m = run(
        tmp_path,
        [
            row(
                AccountNumber="000123",
                BillNumber="00045",
                MailZip="00501",
                GroupCode="007",
                ParcelNumber="0009",
                MeterNumber="000M",
                CurrReading="00100",
                PrevReading="0099",
                Usage="001",
            )
        ],
    )
    inv = m.invoice
    assert inv["CR"]["AccountNumber"] == "000123"
    assert inv["IH"]["InvoiceNumber"] == "00045"
    assert inv["CR"]["Zip"] == "00501"
    d = inv["ID"][0]
    assert (d["CustomField3"], d["CustomField5"], d["CustomField30"]) == ("007", "0009", "000M")
    assert (d["CustomField21"], d["CustomField11"], d["CustomField22"]) == ("00100", "0099", "001")


def test_blanks_trimmed_and_text_cleaned(tmp_path):
    r = row(
        CustomerName='  Smith, "Bud"\tJr.  ',
        MailCity=" Dover ",
        ServiceDescription="Water\tand sewer",
        AmountDue=" 100.50 ",
        LineNumber=" 1 ",
    )
    m = run(tmp_path, [r])
    inv = m.invoice
    assert inv["CR"]["CustomerName"] == 'Smith, "Bud" Jr.'
    assert inv["CR"]["City"] == "Dover"
    assert inv["ID"][0]["Description"] == "Water and sewer"
    assert inv["IH"]["TotalAmountDue"] == "100.50"


def test_mail_state_upper_cased(tmp_path):
    assert run(tmp_path, [row(MailState="nh")]).invoice["CR"]["State"] == "NH"


def test_account_number_longer_than_50_rejects_the_bill(tmp_path):
    m = run(tmp_path, [*bills(30), row(AccountNumber="A" * 51)])
    assert len(m.invoices) == 30
    assert m.reasons() == ["AccountNumber longer than 50 characters (51)"]


# --- header: columns by name -----------------------------------------------------------


def test_columns_matched_case_insensitively_in_any_order(tmp_path):
    rows = bills(5, lines=2)
    canonical = run(tmp_path / "a", rows)
    shuffled = COLUMNS[:]
    random.Random(3).shuffle(shuffled)
    header = [f" {c.upper()} " if i % 3 == 0 else (c.lower() if i % 3 == 1 else c) for i, c in enumerate(shuffled)]
    other = run(tmp_path / "b", encode(rows, columns=shuffled, header=header))
    assert other.raw == canonical.raw
    assert other.result.unknown_columns == []


def test_unknown_columns_are_reported_and_ignored(tmp_path):
    rows = [dict(r, Foo="x", **{"Meter Size": "5/8"}) for r in bills(3)]
    cols = COLUMNS[:5] + ["Foo"] + COLUMNS[5:] + ["Meter Size"]
    m = run(tmp_path / "a", encode(rows, columns=cols))
    assert m.result.unknown_columns == ["Foo", "Meter Size"]
    assert m.result.summary()["unknown_columns"] == ["Foo", "Meter Size"]
    assert m.raw == run(tmp_path / "b", rows).raw


def test_column_aliases(tmp_path):
    settings = dataclasses.replace(SETTINGS, column_aliases={"AccountNumber": "Acct No", "Email": "E-MAIL"})
    header = ["Acct No" if c == "AccountNumber" else "e-mail" if c == "Email" else c for c in COLUMNS]
    data = encode([row()], header=header)
    m = run(tmp_path, data, settings)
    assert m.invoice["CR"]["AccountNumber"] == "0012345-01"
    assert m.invoice["CR"]["EmailAddress"] == "ana@example.com"
    # without the alias, the renamed required column is missing and Email is unknown
    exc = rejected(tmp_path / "x", data)
    assert exc.rule == "missing required column" and exc.line == 1 and "AccountNumber" in exc.message


def test_missing_required_column_rejects_the_file(tmp_path):
    cols = [c for c in COLUMNS if c != "DueDate"]
    exc = rejected(tmp_path, encode([row()], columns=cols))
    assert (exc.rule, exc.line) == ("missing required column", 1)
    assert "DueDate" in exc.message


def test_column_twice_rejects_the_file(tmp_path):
    cols = [*COLUMNS, "CustomerName"]
    exc = rejected(tmp_path, encode([row()], header=[*COLUMNS, "customername"], columns=cols))
    assert (exc.rule, exc.line) == ("header", 1)


# --- encoding and framing ----------------------------------------------------------------


def test_windows_1252_and_utf8_with_bom(tmp_path):
    rows = [row(CustomerName="José Müller", ServiceDescription="Eau – été")]
    cp = encode(rows, encoding="cp1252")
    utf = encode(rows, encoding="utf-8-sig")
    assert "é".encode("cp1252") in cp and "é".encode() in utf
    a, b = run(tmp_path / "a", cp), run(tmp_path / "b", utf)
    assert a.invoice["CR"]["CustomerName"] == "José Müller"
    assert a.invoice["ID"][0]["Description"] == "Eau – été"
    assert a.raw == b.raw
    assert "José Müller".encode() in a.raw[0]  # the BIF is UTF-8


def test_utf8_without_bom_is_read_as_windows_1252(tmp_path):
    m = run(tmp_path, encode([row(CustomerName="José")], encoding="utf-8"))
    assert m.invoice["CR"]["CustomerName"] == "JosÃ©"


def test_undecodable_byte_rejects_the_file_naming_the_line(tmp_path):
    data = encode(bills(3)).replace(b"A001", b"A\x81001", 1)  # 0x81 is not a windows-1252 character
    exc = rejected(tmp_path, data)
    assert (exc.rule, exc.line) == ("encoding", 3)
    assert "0x81" in exc.message and "cp1252" in exc.message


def test_invalid_utf8_after_bom_rejects_the_file_naming_the_line(tmp_path):
    data = encode(bills(3), encoding="utf-8-sig").replace(b"A002", "Aé002".encode("cp1252"), 1)
    exc = rejected(tmp_path, data)
    assert (exc.rule, exc.line) == ("encoding", 4)
    assert "utf-8" in exc.message


def test_crlf_and_lf_give_the_same_bif(tmp_path):
    rows = bills(4, lines=2)
    crlf = run(tmp_path / "a", encode(rows, newline="\r\n"))
    lf = run(tmp_path / "b", encode(rows, newline="\n"))
    mixed_text = encode(rows, newline="\n").replace(b"\n", b"\r\n", 3)
    mixed = run(tmp_path / "c", mixed_text)
    assert crlf.raw == lf.raw == mixed.raw


def test_no_final_newline(tmp_path):
    assert len(run(tmp_path, encode(bills(2)).rstrip(b"\r\n")).invoices) == 2


def test_empty_lines_are_ignored_and_lines_keep_their_numbers(tmp_path):
    rows = bills(3) + [row(AccountNumber="X", BillNumber="BX", BillDate="13/01/2026")]
    text = encode(rows, newline="\n").decode("cp1252").split("\n")
    # header, blank, A000, blank(spaces), A001, A002, blank, X, trailer, blank, blank
    text = [text[0], "", text[1], "   ", text[2], text[3], "\t", text[4], text[5], "", ""]
    m = run(tmp_path, "\r\n".join(text).encode("cp1252"), LENIENT)
    assert len(m.invoices) == 3
    (reject,) = m.result.rejects
    assert reject.lines == [8]
    assert reject.reason == "BillDate '13/01/2026' is not a date MM/DD/YYYY"


# --- bills and detail lines --------------------------------------------------------------


def test_lines_of_a_bill_need_not_be_contiguous(tmp_path):
    a1, a2, a3 = bill("A", lines=3)
    (b1,) = bill("B")
    m = run(tmp_path, [a1, b1, a2, a3])
    assert [i["CR"]["AccountNumber"] for i in m.invoices] == ["A", "B"]
    assert [d["CustomField30"] for d in m.invoices[0]["ID"]] == ["M1", "M2", "M3"]
    assert len(m.invoices[1]["ID"]) == 1


def test_same_bill_number_different_account_is_another_bill(tmp_path):
    m = run(tmp_path, bill("A", "B1") + bill("B", "B1"))
    assert [(i["CR"]["AccountNumber"], i["IH"]["InvoiceNumber"]) for i in m.invoices] == [("A", "B1"), ("B", "B1")]


def test_invoices_keep_first_appearance_order(tmp_path):
    z, a, m_ = bill("Z", lines=2), bill("A"), bill("M", lines=2)
    m = run(tmp_path, [z[0], a[0], m_[0], z[1], m_[1]])
    assert [i["CR"]["AccountNumber"] for i in m.invoices] == ["Z", "A", "M"]


def test_detail_rows_in_line_number_order(tmp_path):
    rows = [row(LineNumber=n, ServiceDescription=f"line {n}", MeterNumber=f"M{n}") for n in ("3", "10", "1", "2")]
    m = run(tmp_path, rows)
    assert [d["Description"] for d in m.invoice["ID"]] == ["line 1", "line 2", "line 3", "line 10"]


def test_bill_level_disagreement_rejects_the_bill(tmp_path):
    a = bill("A", lines=3)
    a[2]["CustomerName"] = "Someone Else"
    a[2]["DueDate"] = "03/15/2026"
    m = run(tmp_path, bills(25) + a)
    assert len(m.invoices) == 25
    (reject,) = m.result.rejects
    assert (reject.account, reject.bill, reject.lines) == ("A", "B-A", [27, 28, 29])
    assert reject.reason == "line 29 disagrees with line 27 on DueDate, CustomerName"


def test_line_level_columns_may_differ(tmp_path):
    a = bill("A", lines=2)
    a[1].update(ServiceDescription="Sewer", LineAmount="1.00", ServiceAddress="elsewhere")
    m = run(tmp_path, a)
    assert [d["Description"] for d in m.invoice["ID"]] == ["Water", "Sewer"]


@pytest.mark.parametrize(
    "column", ["AccountNumber", "CustomerNumber", "LocationNumber", "BillNumber", "BillDate", "DueDate", "CustomerName"]
)
def test_missing_required_value_rejects_the_bill(tmp_path, column):
    m = run(tmp_path, [*bills(30), row(**{"AccountNumber": "X", "BillNumber": "BX", column: ""})])
    assert len(m.invoices) == 30
    assert m.reasons() == [f"missing required value {column}"]
    assert m.result.rejects[0].lines == [32]


@pytest.mark.parametrize("value", ["", "0", "-1", "1.5", "one", "\u00b2"])  # "²": isdigit() but not int()
def test_line_number_missing_or_not_a_positive_integer_rejects_the_bill(tmp_path, value):
    m = run(tmp_path, [*bills(30), row(AccountNumber="X", BillNumber="BX", LineNumber=value)])
    assert m.reasons() == [f"line 32: LineNumber {value!r} is not an integer >= 1"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("BillDate", "02/30/2026"),
        ("DueDate", "2026-02-15"),
        ("DeferredBeginDate", "2/1/2026"),
        ("DeferredEndDate", "02/29/2025"),
    ],
)
def test_bad_bill_date_rejects_the_bill(tmp_path, column, value):
    m = run(tmp_path, [*bills(30), row(AccountNumber="X", BillNumber="BX", **{column: value})])
    assert len(m.invoices) == 30
    assert m.reasons() == [f"{column} {value!r} is not a date MM/DD/YYYY"]


def test_a_rejected_value_leaves_no_exception_in_a_reference_cycle(tmp_path):
    """A bill rejected for a value must not leave its exception (and through its traceback
    the frames that hold a whole range's lines) in a reference cycle: the collector then
    walks and frees a range's data late, which cost ~6 % on the warn-heavy benchmark."""
    data = encode([*bills(30), row(AccountNumber="X", BillNumber="BX", BillDate="02/30/2026")])
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage
    try:
        result = map_aus(data, NAME, LENIENT, tmp_path, DAY, workers=1)
        gc.collect()
        exceptions = BaseException | types.TracebackType | types.FrameType
        kept = [type(o).__name__ for o in gc.garbage if isinstance(o, exceptions)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert [r.reason for r in result.rejects] == ["BillDate '02/30/2026' is not a date MM/DD/YYYY"]
    assert kept == []


@pytest.mark.parametrize("column", ["PrevReadDate", "CurrReadDate"])
def test_bad_read_date_rejects_the_bill(tmp_path, column):
    m = run(tmp_path, [*bills(30), row(AccountNumber="X", BillNumber="BX", **{column: "02/30/2026"})])
    assert m.reasons() == [f"LineNumber 1: {column} '02/30/2026' is not a date MM/DD/YYYY"]


def test_leap_day_is_a_date(tmp_path):
    assert run(tmp_path, [row(BillDate="02/29/2028")]).invoice["IH"]["InvoiceDate"] == "02/29/2028"


@pytest.mark.parametrize(
    "column",
    [
        "AmountDueAfterDueDate",
        "PaymentsReceived",
        "PastDueAmount",
        "LineAmount",
        "LinePreviousBalance",
        "GroupPreviousBalance",
    ],
)
@pytest.mark.parametrize("value", ["1.234", "1,000.00", "$5.00", "abc", "1."])
def test_bad_amount_rejects_the_bill(tmp_path, column, value):
    m = run(tmp_path, [*bills(30), row(AccountNumber="X", BillNumber="BX", **{column: value})])
    assert len(m.invoices) == 30
    (reason,) = m.reasons()
    assert f"{column} {value!r} is not an amount with at most 2 decimals" in reason


@pytest.mark.parametrize("column", ["PrevReading", "CurrReading", "Usage"])
@pytest.mark.parametrize("value", ["1e3", "12,5", "n/a"])
def test_bad_reading_rejects_the_bill(tmp_path, column, value):
    m = run(tmp_path, [*bills(30), row(AccountNumber="X", BillNumber="BX", **{column: value})])
    assert m.reasons() == [f"LineNumber 1: {column} {value!r} is not a decimal number"]


def test_readings_written_as_given(tmp_path):
    d = run(tmp_path, [row(PrevReading="-1.000", CurrReading="12345678901234567890.125", Usage="0.5")]).invoice["ID"][0]
    assert (d["CustomField11"], d["CustomField21"], d["CustomField22"]) == ("-1.000", "12345678901234567890.125", "0.5")


@pytest.mark.parametrize("change", ["extra", "short"])
def test_wrong_field_count_rejects_the_bill(tmp_path, change):
    a = bill("A", lines=2)
    data = encode(bills(30) + a).decode("cp1252").split("\r\n")
    assert data[32].startswith("123|A|")  # physical line 33: the bill's second line
    data[32] = data[32] + "|extra" if change == "extra" else data[32].rsplit("|", 1)[0]
    m = run(tmp_path, "\r\n".join(data).encode("cp1252"))
    assert len(m.invoices) == 30
    (reject,) = m.result.rejects
    assert (reject.account, reject.lines) == ("A", [32, 33])
    n = 43 if change == "extra" else 41
    assert reject.reason == f"line 33 has {n} fields, the header has 42"


def test_cut_short_line_rejects_its_bill_not_the_file(tmp_path):
    """A line cut short (here before AmountDue) that still names its bill rejects that bill."""
    a = bill("A", lines=2)
    data = encode(bills(30) + a).decode("cp1252").split("\r\n")
    data[32] = "|".join(data[32].split("|")[:10])
    m = run(tmp_path, "\r\n".join(data).encode("cp1252"))
    assert len(m.invoices) == 30
    (reject,) = m.result.rejects
    assert (reject.account, reject.bill, reject.lines) == ("A", "B-A", [32, 33])
    assert reject.reason == "line 33 has 10 fields, the header has 42"


def test_cut_short_first_line_without_amount_due_rejects_the_file(tmp_path):
    a = bill("A", lines=2)
    data = encode(bills(30) + a).decode("cp1252").split("\r\n")
    data[31] = "|".join(data[31].split("|")[:10])
    exc = rejected(tmp_path, "\r\n".join(data).encode("cp1252"))
    assert (exc.rule, exc.line) == ("trailer", 32)
    assert exc.message == "AmountDue is missing, so the trailer total cannot be checked"


def test_duplicate_line_rejects_the_bill(tmp_path):
    a = bill("A", lines=2)
    m = run(tmp_path, [*bills(30), *a, dict(a[1])])
    assert len(m.invoices) == 30
    assert m.reasons() == ["line 34: duplicate line (LineNumber 2, MeterNumber 'M2')"]
    assert m.result.rejects[0].lines == [32, 33, 34]


def test_same_line_number_other_meter_is_not_a_duplicate(tmp_path):
    m = run(tmp_path, [row(MeterNumber="M1"), row(MeterNumber="M2")], MULTI)
    assert m.invoice["ID"][0]["CustomField30"] == "M1;M2"


# --- meters ------------------------------------------------------------------------------


def _meters(count: int, **values: str) -> list[dict]:
    return [
        row(
            MeterNumber=f"M{k:02d}",
            PrevReadDate=f"01/{k:02d}/2026",
            PrevReading=f"{k}00",
            CurrReadDate=f"02/{k:02d}/2026",
            CurrReading=f"{k}50",
            Usage="50",
            Estimated="N",
            ChangedOut="N",
            **values,
        )
        for k in range(1, count + 1)
    ]


def test_one_meter_with_the_flag_on_is_plain(tmp_path):
    d = run(tmp_path, [row()], MULTI).invoice["ID"][0]
    assert (d["CustomField30"], d["CustomField10"], d["CustomField11"]) == ("M1", "01/01/2026", "1000.5")
    assert (d["CustomField20"], d["CustomField21"], d["CustomField22"]) == ("01/28/2026", "1100", "99.5")
    assert (d["CustomField23"], d["CustomField24"]) == ("1", "0")
    assert all(not d[f"CustomField{n}"] for n in (40, 50, 60, 70, 80))


def test_three_meters_joined(tmp_path):
    rows = _meters(3)
    rows[1].update(Usage="0.1", Estimated="y")
    rows[2].update(Usage="0.2", PrevReadDate="")
    (d,) = run(tmp_path, rows, MULTI).invoice["ID"]
    assert d["CustomField30"] == "M01;M02;M03"
    assert d["CustomField10"] == "01/01/2026;01/02/2026;"
    assert d["CustomField11"] == "100;200;300"
    assert d["CustomField20"] == "02/01/2026;02/02/2026;02/03/2026"
    assert d["CustomField21"] == "150;250;350"
    assert d["CustomField22"] == "50.3"
    assert (d["CustomField23"], d["CustomField24"]) == ("1", "0")
    # line-level columns come from the detail line
    assert (d["Description"], d["LineItemTotal"], d["CustomField2"]) == ("Water", "60.25", "9 Elm St")


def test_twenty_five_meters_fill_the_overflow_fields_in_order(tmp_path):
    rows = _meters(25)
    random.Random(1).shuffle(rows[1:])  # source order is meter order: keep it as given
    order = [r["MeterNumber"] for r in rows]
    rows[24]["ChangedOut"] = "Y"
    (d,) = run(tmp_path, rows, MULTI).invoice["ID"]

    def chunks(values):
        return [";".join(values[i : i + 5]) for i in range(0, 25, 5)]

    ks = [int(m[1:]) for m in order]
    expected_fields = {
        (30, 80): chunks(order),
        (10, 40): chunks([f"01/{k:02d}/2026" for k in ks]),
        (11, 50): chunks([f"{k}00" for k in ks]),
        (20, 60): chunks([f"02/{k:02d}/2026" for k in ks]),
        (21, 70): chunks([f"{k}50" for k in ks]),
    }
    for (main, overflow), values in expected_fields.items():
        got = [d[f"CustomField{main}"]] + [d[f"CustomField{overflow + i}"] for i in range(4)]
        assert got == values, (main, overflow)
    assert d["CustomField22"] == "1250"
    assert (d["CustomField23"], d["CustomField24"]) == ("0", "1")


def test_seven_meters_use_the_first_overflow_field_only(tmp_path):
    (d,) = run(tmp_path, _meters(7), MULTI).invoice["ID"]
    assert d["CustomField30"] == "M01;M02;M03;M04;M05"
    assert d["CustomField80"] == "M06;M07"
    assert d["CustomField81"] == d["CustomField82"] == d["CustomField83"] == ""
    assert d["CustomField70"] == "650;750" and d["CustomField71"] == ""


def test_usage_sum_is_exact(tmp_path):
    rows = _meters(3)
    for r, usage in zip(rows, ["0.1", "0.2", "12345678901234567890.7"], strict=True):
        r["Usage"] = usage
    assert run(tmp_path, rows, MULTI).invoice["ID"][0]["CustomField22"] == "12345678901234567891.0"


def test_usage_sum_without_exponent(tmp_path):
    rows = _meters(2)
    rows[0]["Usage"], rows[1]["Usage"] = "0.0000001", "0.0000002"
    assert run(tmp_path / "a", rows, MULTI).invoice["ID"][0]["CustomField22"] == "0.0000003"
    rows[0]["Usage"], rows[1]["Usage"] = "100", "-100"
    assert run(tmp_path / "b", rows, MULTI).invoice["ID"][0]["CustomField22"] == "0"


@pytest.mark.parametrize(
    ("flags", "written"), [(["N", "N", "N"], "0"), (["N", "Y", "N"], "1"), (["", "", ""], ""), (["", "n", ""], "0")]
)
def test_estimated_and_changed_out_any_y(tmp_path, flags, written):
    rows = _meters(3)
    for r, flag in zip(rows, flags, strict=True):
        r["Estimated"] = r["ChangedOut"] = flag
    d = run(tmp_path, rows, MULTI).invoice["ID"][0]
    assert d["CustomField23"] == d["CustomField24"] == written


def test_meters_on_several_lines(tmp_path):
    rows = [dict(r, LineNumber="2") for r in _meters(2)] + [dict(r, LineNumber="1") for r in _meters(1)]
    ids = run(tmp_path, rows, MULTI).invoice["ID"]
    assert [d["CustomField30"] for d in ids] == ["M01", "M01;M02"]


def test_twenty_six_meters_reject_the_bill(tmp_path):
    rows = [*bills(30), *[dict(r, AccountNumber="X", BillNumber="BX") for r in _meters(26)]]
    m = run(tmp_path, rows, MULTI)
    assert len(m.invoices) == 30
    assert m.reasons() == ["LineNumber 1 has 26 meters, more than 25"]
    assert m.result.rejects[0].lines == list(range(32, 58))


def test_two_meters_with_the_flag_off_reject_the_bill(tmp_path):
    rows = [*bills(30), *[dict(r, AccountNumber="X", BillNumber="BX") for r in _meters(2)]]
    m = run(tmp_path, rows, SETTINGS)
    assert len(m.invoices) == 30
    assert m.reasons() == ["LineNumber 1 has 2 meters but multiple_meters is off"]


def test_bad_value_on_a_later_meter_rejects_the_bill(tmp_path):
    meters = [dict(r, AccountNumber="X", BillNumber="BX") for r in _meters(3)]
    meters[2]["CurrReadDate"] = "02/30/2026"
    m = run(tmp_path, [*bills(30), *meters], MULTI)
    assert m.reasons() == ["LineNumber 1: CurrReadDate '02/30/2026' is not a date MM/DD/YYYY"]


# --- file-level rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "123_2026110_UB.TXT",
        "123_20261101_ub.TXT",
        "UB_20261101_123.TXT",
        "123_20261301_UB.TXT",
        "123_20261101_UB.CSV",
        "123_20261101_UB.TXT.tmp",
        "123_20261101_TOOLONG12.TXT",
        "x123_20261101_UB.TXT",
    ],
)
def test_bad_file_name_rejects_the_file(tmp_path, name):
    exc = rejected(tmp_path, [row()], name=name)
    assert exc.rule == "file name" and exc.line is None


@pytest.mark.parametrize("name", ["123_20261101_UB.txt", "123_20261101093000_UB.TXT", "123_20261101_UB2.Txt"])
def test_good_file_names(tmp_path, name):
    m = run(tmp_path, [row()], name=name)
    assert m.result.bifs[0].name == f"{Path(name).stem}.BIF"


def test_file_name_bid_not_the_billers(tmp_path):
    exc = rejected(tmp_path, [row()], name="124_20261101_UB.TXT")
    assert exc.rule == "BID" and "124" in exc.message and "123" in exc.message


def test_line_bid_not_the_billers(tmp_path):
    rows = bills(5)
    rows[3]["BID"] = "1234"
    exc = rejected(tmp_path, rows)
    assert (exc.rule, exc.line) == ("BID", 5)
    assert "'1234'" in exc.message


def test_missing_trailer(tmp_path):
    data = encode(bills(3)).decode("cp1252").split("\r\n")
    exc = rejected(tmp_path, "\r\n".join(data[:-2]).encode("cp1252"))
    assert isinstance(exc, IncompleteFile)
    assert (exc.rule, exc.line) == ("trailer", 4)
    assert "missing trailer" in exc.message


def test_cut_off_file(tmp_path):
    data = encode(bills(3))
    exc = rejected(tmp_path, data[: len(data) // 2])
    assert isinstance(exc, IncompleteFile) and exc.rule == "trailer"


@pytest.mark.parametrize("data", [b"", b"\r\n\r\n", "|".join(COLUMNS).encode()])
def test_empty_or_header_only(tmp_path, data):
    assert isinstance(rejected(tmp_path, data), IncompleteFile)


@pytest.mark.parametrize("trailer", ["TRAILER|3|3", "TRAILER|x|3|6.75", "TRAILER|3|3|6.755", "TRAILER|3|3|6.75|0"])
def test_malformed_trailer(tmp_path, trailer):
    exc = rejected(tmp_path, encode(bills(3), trailer=trailer))
    assert isinstance(exc, IncompleteFile)
    assert (exc.rule, exc.line) == ("trailer", 5)
    assert "malformed trailer" in exc.message


def test_trailer_is_right(tmp_path):
    assert trailer_for(bills(3, lines=2)) == "TRAILER|6|3|6.75"
    assert len(run(tmp_path, encode(bills(3, lines=2), trailer="trailer|6|3|6.75")).invoices) == 3


@pytest.mark.parametrize(
    ("trailer", "words"),
    [
        ("TRAILER|5|3|6.75", "trailer says 5 detail lines, file has 6"),
        ("TRAILER|6|2|6.75", "trailer says 2 bills, file has 3"),
        ("TRAILER|6|3|6.76", "trailer total 6.76 but the bills add up to 6.75"),
    ],
)
def test_trailer_does_not_match(tmp_path, trailer, words):
    exc = rejected(tmp_path, encode(bills(3, lines=2), trailer=trailer))
    assert isinstance(exc, IncompleteFile)
    assert (exc.rule, exc.line) == ("trailer", 8)
    assert exc.message == words


def test_trailer_total_uses_the_first_line_of_each_bill(tmp_path):
    a = bill("A", lines=2, amount="5.00")
    a[1]["AmountDue"] = "7.00"  # disagrees: the bill is rejected, but the total is the first line's
    data = encode([*bills(30), *a], trailer="TRAILER|32|31|477.50")  # 1.25 + ... + 30.25 = 472.50, + 5.00
    m = run(tmp_path, data)
    assert m.reasons() == ["line 33 disagrees with line 32 on AmountDue"]


@pytest.mark.parametrize("amount", ["1.234", "", "abc", "1,00"])
def test_amount_due_unparseable_rejects_the_file(tmp_path, amount):
    rows = bills(3)
    rows[2]["AmountDue"] = amount
    exc = rejected(tmp_path, encode(rows, trailer="TRAILER|3|3|6.75"))
    assert (exc.rule, exc.line) == ("trailer", 4)
    assert f"AmountDue {amount!r} does not parse" in exc.message


def test_reject_threshold_exceeded_writes_nothing(tmp_path):
    rows = bills(20)
    rows[3]["BillDate"] = rows[9]["DueDate"] = "02/30/2026"  # 2 of 20 = 10 % > 5 %
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("from before")
    with pytest.raises(FileRejected) as info:
        map_aus(encode(rows), NAME, SETTINGS, out, DAY, workers=1)
    exc = info.value
    assert exc.rule == "reject threshold"
    assert "2 of 20 bills rejected" in exc.message and "5%" in exc.message
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no .BIF, no .staging-* folder
    assert not list(out.glob("*.BIF")) and not list(out.glob(".staging*"))


def test_reject_threshold_not_exceeded(tmp_path):
    rows = bills(20)
    rows[3]["BillDate"] = "02/30/2026"  # 1 of 20 = 5 %: not more than the threshold
    m = run(tmp_path, rows)
    assert m.result.bills_read == 20 and m.result.accepted == 19
    assert [(r.account, r.lines) for r in m.result.rejects] == [("A003", [5])]
    assert "A003" not in [i["CR"]["AccountNumber"] for i in m.invoices]
    s = m.result.summary()
    assert (s["bills_read"], s["accepted"], s["rejected"]) == (20, 19, 1)
    assert m.bifs[0].header["InvoiceCount"] == "19"
    assert Decimal(m.bifs[0].header["TotalInvoiceAmount"]) == sum(Decimal(f"{n + 1}.25") for n in range(20)) - Decimal(
        "4.25"
    )


def test_reject_threshold_from_settings(tmp_path):
    rows = bills(20)
    rows[3]["BillDate"] = "02/30/2026"
    exc = rejected(tmp_path, rows, dataclasses.replace(SETTINGS, reject_threshold_pct=0))
    assert exc.rule == "reject threshold"
    rows[9]["BillDate"] = "02/30/2026"
    m = run(tmp_path / "b", rows, dataclasses.replace(SETTINGS, reject_threshold_pct=10))
    assert len(m.result.rejects) == 2


def test_every_bill_rejected_is_over_the_threshold(tmp_path):
    rows = bills(3)
    for r in rows:
        r["CustomerName"] = ""
    assert rejected(tmp_path, rows).rule == "reject threshold"


def test_valid_trailer_and_no_bills_is_a_success_with_no_bif(tmp_path):
    m = run(tmp_path, encode([], trailer="TRAILER|0|0|0.00"))
    assert m.result.bifs == [] and m.result.rejects == []
    assert m.result.summary()["bills_read"] == 0
    assert list((tmp_path / "out").iterdir()) == []


# --- BIF parts, FH figures, determinism --------------------------------------------------


def test_split_by_max_invoices_per_file(tmp_path):
    settings = dataclasses.replace(SETTINGS, max_invoices_per_file=3)
    m = run(tmp_path, bills(7, lines=2), settings)
    assert [p.name for p in m.result.bifs] == [
        "123_20261101_UB_01.BIF",
        "123_20261101_UB_02.BIF",
        "123_20261101_UB_03.BIF",
    ]
    assert [p.invoices for p in m.result.bifs] == [3, 3, 1]
    assert [i["CR"]["AccountNumber"] for i in m.invoices] == [f"A{n:03d}" for n in range(7)]
    for part, bif, raw in zip(m.result.bifs, m.bifs, m.raw, strict=True):
        assert raw.startswith(b"FH,")  # each a complete file with its own FH
        invoices = list(bif.invoices())
        total = sum((Decimal(i["IH"]["TotalAmountDue"]) for i in invoices), Decimal(0))
        assert bif.header["InvoiceCount"] == str(len(invoices)) == str(part.invoices)
        assert bif.header["TotalInvoiceAmount"] == f"{total:.2f}" == f"{part.total:.2f}"
        assert bif.header["BillerGuid"] == GUID
        assert all(len(i["ID"]) == 2 for i in invoices)
    assert m.result.accepted == 7


def test_split_by_max_bytes_per_file(tmp_path):
    """Parts are bounded in bytes too; every part is a whole BIF within the bound, invoices in
    order, none lost or repeated; an invoice larger than the bound goes alone."""
    whole = run(tmp_path / "whole", bills(40, lines=2), SETTINGS)
    (only,) = whole.raw
    cap = len(only) // 4
    m = run(tmp_path / "split", bills(40, lines=2), dataclasses.replace(SETTINGS, max_bytes_per_file=cap))
    assert len(m.result.bifs) >= 4
    assert all(len(raw) <= cap for raw in m.raw)
    assert [i["CR"]["AccountNumber"] for i in m.invoices] == [f"A{n:03d}" for n in range(40)]
    assert sum(p.invoices for p in m.result.bifs) == 40
    tiny = run(tmp_path / "tiny", bills(3, lines=2), dataclasses.replace(SETTINGS, max_bytes_per_file=300))
    assert [p.invoices for p in tiny.result.bifs] == [1, 1, 1]


def test_split_exactly_full_parts(tmp_path):
    m = run(tmp_path, bills(6), dataclasses.replace(SETTINGS, max_invoices_per_file=3))
    assert [(p.name, p.invoices) for p in m.result.bifs] == [
        ("123_20261101_UB_01.BIF", 3),
        ("123_20261101_UB_02.BIF", 3),
    ]


def test_single_part_keeps_the_stem(tmp_path):
    m = run(tmp_path, bills(7), dataclasses.replace(SETTINGS, max_invoices_per_file=7))
    assert [p.name for p in m.result.bifs] == ["123_20261101_UB.BIF"]


def test_fh_figures_are_a_recount(tmp_path):
    m = run(tmp_path, bills(12, lines=3))
    (bif,) = m.bifs
    ihs = [v for t, v in bif.rows if t == "IH"]
    assert bif.header["InvoiceCount"] == str(len(ihs)) == "12"
    assert bif.header["TotalInvoiceAmount"] == f"{sum(Decimal(v['TotalAmountDue']) for v in ihs):.2f}" == "81.00"
    assert bif.header["FileCreationDate"] == "11/01/2026"
    part = m.result.bifs[0]
    assert (part.invoices, part.total) == (12, Decimal("81.00"))


def test_sha256_of_the_written_file(tmp_path):
    import hashlib

    m = run(tmp_path, bills(3))
    assert m.result.bifs[0].sha256 == hashlib.sha256(m.raw[0]).hexdigest()
    assert m.result.summary()["bifs"] == [
        {"name": "123_20261101_UB.BIF", "invoices": 3, "total": "6.75", "sha256": m.result.bifs[0].sha256}
    ]


def test_deterministic(tmp_path):
    data = aus_files.format_file(aus_files.make_rows(300, seed=11))
    a = run(tmp_path / "a", data)
    b = run(tmp_path / "b", data)
    assert a.raw == b.raw
    assert [p.sha256 for p in a.result.bifs] == [p.sha256 for p in b.result.bifs]


def test_parallel_and_serial_output_identical(tmp_path, monkeypatch):
    """~25,000 generated bills (some rejected, some warned) cut into byte ranges mapped by
    2 workers, written in 3 parts, checked in parallel: byte-identical to the serial run and
    to the general line path; a bill whose lines fall in two ranges sends the file to the
    line path, with the same output."""
    rows = aus_files.make_rows(25_000, seed=5)
    for n, r in enumerate(rows):
        if n % 997 == 0:
            r["Email"] = "broken@"
        if n % 4999 == 0:
            r["BillDate"] = "02/30/2026"
    data = aus_files.format_file(rows)
    rows.append(rows.pop(5))  # a line of the second bill goes last: the bill spans the file
    scattered = aus_files.format_file(rows)
    del rows
    settings = dataclasses.replace(MULTI, max_invoices_per_file=10_000)
    serial = map_aus(data, NAME, settings, tmp_path / "serial", DAY, workers=1)
    parallel = map_aus(data, NAME, settings, tmp_path / "parallel", DAY, workers=2)
    # 5 ranges, by 1 and 2 workers; the parts' rows were proven where they were built: no part re-read
    for result, n in ((serial, 1), (parallel, 2)):
        assert result.stats == MapStats("ranges", range_tasks=5, workers=n, per_bill=result.stats.per_bill,
                                        block_tables=5, parts_rechecked=0)
    # from the file on disk: read by ranges in workers the forkserver starts, the same bytes
    (tmp_path / NAME).write_bytes(data)
    from_disk = map_aus(tmp_path / NAME, NAME, settings, tmp_path / "disk", DAY, workers=2)
    assert (from_disk.stats.strategy, from_disk.stats.range_tasks, from_disk.stats.workers) == ("ranges", 5, 2)
    by_lines = map_aus(data, NAME, settings, tmp_path / "lines", DAY, workers=2, strategy="lines")
    assert (by_lines.stats.strategy, by_lines.stats.range_tasks, by_lines.stats.line_tasks) == ("lines", 0, 1)
    fallback = map_aus(scattered, NAME, settings, tmp_path / "fallback", DAY, workers=2)
    assert (fallback.stats.strategy, fallback.stats.range_tasks, fallback.stats.line_tasks) == ("lines", 5, 1)
    assert fallback.stats.parts_rechecked == 0
    (tmp_path / "scattered.txt").write_bytes(scattered)
    fallback_from_disk = map_aus(tmp_path / "scattered.txt", NAME, settings, tmp_path / "fallback2", DAY, workers=2)
    by_lines_scattered = map_aus(scattered, NAME, settings, tmp_path / "lines2", DAY, workers=1)

    assert serial.bills_read == parallel.bills_read == 25_000
    assert len(serial.rejects) > 0 and serial.warning_counts.get("Email invalid, left blank", 0) > 0
    assert [p.invoices for p in serial.bifs] == [10_000, 10_000, 25_000 - 10_000 * 2 - len(serial.rejects)]
    for other in (parallel, from_disk, by_lines):
        assert_same_output(serial, other)
    assert_same_output(by_lines_scattered, fallback)
    assert_same_output(by_lines_scattered, fallback_from_disk)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"biller_guid": ""}, "line 1: FH BillerGuid (FileSpecID 2) is empty"),  # the FH row fails
        ({"invoice_format_guid": ""}, "line 2: IH InvoiceFormatGuid (FileSpecID 9) is empty"),  # invoice rows fail
    ],
)
def test_a_bif_that_fails_the_check_is_not_written(tmp_path, change, problem, workers):
    exc = rejected_with(tmp_path, encode(bills(3)), dataclasses.replace(SETTINGS, **change), workers=workers)
    assert exc.rule == "BIF check" and problem in str(exc)


def rejected_with(tmp_path: Path, data: bytes, settings: InvoiceSettings, **kw) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        map_aus(data, NAME, settings, tmp_path / "out", DAY, **kw)
    assert list((tmp_path / "out").iterdir()) == []
    return info.value


# --- the column path: the same bytes as the per-bill path, whatever the bill ----------------


def _messy(rows: list[dict], rng: random.Random) -> list[dict]:
    """One bill in three gets something the per-bill mapper must handle: a value to quote,
    convert, warn about or reject, lines to sort or pack, whitespace to trim or a TAB."""
    by_bill: dict[str, list[dict]] = {}
    for r in rows:
        by_bill.setdefault(r["BillNumber"], []).append(r)
    out = []
    for lines in by_bill.values():
        first = lines[0]
        kind = rng.randrange(30)
        if kind == 0:
            for r in lines:
                r["CustomerName"] = 'Bob "B, Jr" Smith'
        elif kind == 1:
            for r in lines:
                r["Phone"] = "12345"  # blanked, warned
        elif kind == 2:
            for r in lines:
                r["Email"] = "not-an-email"
        elif kind == 3:
            for r in lines:
                r["MailZip"], r["MailState"] = "1234", "N1"
        elif kind == 4:
            for r in lines:
                r["BillDate"] = "02/30/2026"  # rejected
        elif kind == 5:
            for r in lines:
                r["DraftCustomer"] = rng.choice(("x", "y", "n", ""))
        elif kind == 6:
            lines[-1]["LineAmount"] = rng.choice(("1.234", "5", "07.5", "-0"))
        elif kind == 7 and len(lines) > 1:
            lines[1] = dict(lines[1], CustomerName="Someone Else")  # lines disagree
        elif kind == 8 and len(lines) > 1:
            lines.reverse()  # LineNumbers to sort
        elif kind == 9:
            lines.append(dict(lines[-1]))  # a duplicate line
        elif kind == 10:
            lines.append(dict(lines[-1], MeterNumber="M-extra", Estimated="Y"))  # a second meter
        elif kind == 11:
            lines[0]["LineNumber"] = rng.choice(("0", "x", "\u00b2"))
        elif kind == 12:
            for r in lines:
                r["CustomerName"] = ""  # a required value missing
        elif kind == 13:
            lines[-1]["ServiceDescription"] = " Water "  # trimmed by _split
        elif kind == 14:
            for r in lines:
                r["AccountNumber"] += "\u00a0"  # not trimmed by _split, stripped by the grouping
        elif kind == 15:
            lines[-1]["ServiceAddress"] = "1\tMain St"  # a TAB becomes a space
        elif kind == 16:
            for r in lines:
                r["AmountDue"] = "7.5"  # a first AmountDue not in BIF form (the trailer still adds up)
        elif kind == 17:
            lines[-1]["PrevReadDate"] = "13/01/2026"
        elif kind == 18:
            for r in lines:
                r["CashOnlyCC"] = "Y"
                r["Phone"] = "555-123-4567"
        elif kind == 19:
            for r in lines:
                r["CustomerName"] = "Zoë Ünal, Sr."
        elif kind == 20:
            lines[-1]["ServiceAddress"] = "S" * rng.choice((100, 101))  # at, or over, its BIF field's limit
        elif kind == 21:
            for r in lines:
                r["CustomerName"] = "C" * rng.choice((100, 101))
        del first
        out.extend(lines)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_column_path_matches_the_per_bill_path(tmp_path, monkeypatch, seed):
    """Bills of every kind, cut into many small ranges: the range path (column at a time,
    map_bill for the bills it hands back) writes the bytes, rejects and warnings of the
    line path (map_bill for every bill), and most bills never reach map_bill."""
    rng = random.Random(seed)
    rows = _messy(aus_files.make_rows(3_000, seed=seed), rng)
    data = aus_files.format_file(rows)
    settings = dataclasses.replace(MULTI, reject_threshold_pct=100, max_invoices_per_file=1_000)
    by_columns = map_aus(data, NAME, settings, tmp_path / "columns", DAY, workers=1, range_bytes=40_000)
    by_bills = map_aus(data, NAME, settings, tmp_path / "bills", DAY, workers=1, strategy="lines")
    assert_same_output(by_columns, by_bills)
    assert by_bills.stats.per_bill == 3_000  # the line path: every bill through map_bill
    assert by_columns.stats.strategy == "ranges"
    assert by_columns.stats.per_bill < 3_000 / 2, "the column path should map most bills itself"
    assert len(by_columns.rejects) > 100 and sum(by_columns.warning_counts.values()) > 100
    for part in by_columns.bifs:
        assert check_bif(part.path.read_bytes(), part.name) == []


def test_column_path_with_bills_not_together(tmp_path, monkeypatch):
    """A range whose bills' lines are interleaved is grouped the general way and every bill
    goes through map_bill: the same bytes as the line path."""
    rows = aus_files.make_rows(40, seed=9)
    rows[1], rows[3] = rows[3], rows[1]
    data = aus_files.format_file(rows)
    columns_path = map_aus(data, NAME, MULTI, tmp_path / "a", DAY, workers=1)
    assert columns_path.stats.per_bill == 40
    assert_same_output(columns_path, map_aus(data, NAME, MULTI, tmp_path / "b", DAY, workers=1, strategy="lines"))


# --- the sample file ---------------------------------------------------------------------


def test_sample_file(tmp_path):
    m = run(tmp_path, SAMPLE.read_bytes(), MULTI, name=SAMPLE.name)
    assert len(m.invoices) == 20
    assert m.result.rejects == []
    assert m.result.warning_counts == {"Email invalid, left blank": 3}
    assert [(w["line"], w["account"]) for w in m.result.warnings] == [
        (27, "100009-02"),
        (33, "100013-39"),
        (38, "100015-59"),
    ]
    assert m.bifs[0].header["InvoiceCount"] == "20"
    assert m.bifs[0].header["TotalInvoiceAmount"] == "8285.69"
    first = m.invoices[0]
    assert first["CR"]["CustomerName"] == 'John "Bud" Jones'
    assert first["CR"]["Zip"] == "03801-1234" and first["CR"]["Phone"] == "5559870000"
    assert [d["Description"] for d in first["ID"]] == ["Water", "Sewer", "Electric", "Storm Water"]


# --- files as legacy exporters write them (issue 13) ----------------------------------------


def test_a_dos_eof_byte_after_the_trailer_is_ignored(tmp_path):
    """Old Windows/DOS exporters end the file with Ctrl-Z (0x1A): not data, not a missing trailer."""
    clean = encode(bills(5))
    for variant in (clean + b"\x1a", clean + b"\x1a\x1a", clean[:-2] + b"\x1a"):
        m = run(tmp_path / str(len(variant)), variant)
        assert m.result.accepted == 5 and m.raw == run(tmp_path / "clean", clean).raw


def test_blanks_around_the_trailer_fields_are_trimmed_like_every_field(tmp_path):
    rows = bills(4)
    spaced = trailer_for(rows).replace("|", " | ")
    assert run(tmp_path, encode(rows, trailer=spaced)).result.accepted == 4
    assert run(tmp_path / "lower", encode(rows, trailer=" trailer" + trailer_for(rows)[7:])).result.accepted == 4


def test_control_characters_are_removed_from_every_value_and_counted(tmp_path):
    rows = bills(3)
    rows[0]["CustomerName"] = "Ann\x00 Smith\x07"
    rows[2]["ServiceAddress"] = "1 Main\x1b St"
    m = run(tmp_path, encode(rows))
    text = b"".join(m.raw).decode("utf-8")
    assert not any(chr(c) in text for c in [*range(0, 9), 11, 12, *range(14, 32)])
    assert "Ann Smith" in text and "1 Main St" in text
    assert m.result.warning_counts["control characters removed"] == 3
    assert m.result.accepted == 3


def test_a_utf16_file_is_rejected_naming_its_encoding(tmp_path):
    text = encode(bills(2)).decode("cp1252")
    le, be = text.encode("utf-16-le"), text.encode("utf-16-be")
    for data in (b"\xff\xfe" + le, le, b"\xfe\xff" + be):
        exc = rejected(tmp_path, data)
        assert exc.rule == "encoding" and "UTF-16" in str(exc) and "header lacks" not in str(exc)


def test_a_value_longer_than_its_bif_field_rejects_the_bill_naming_it(tmp_path):
    """Every BIF text field has a maximum length as data (bif_lengths.csv): a 200,000-character
    ServiceAddress rejects its bill naming the column and the limit; the other bill goes."""
    rows = bills(2)
    rows[1]["ServiceAddress"] = "x" * 200_000
    m = run(tmp_path, encode(rows), LENIENT)
    assert m.result.accepted == 1
    assert m.reasons() == ["line 3: ServiceAddress is 200000 characters long; its BIF field takes 100"]
    rows = bills(3)
    rows[0]["CustomerName"] = "N" * 101
    assert run(tmp_path / "name", encode(rows), LENIENT).reasons() == [
        "CustomerName is 101 characters long; its BIF field takes 100"]


def test_the_bif_reader_reads_whatever_the_writer_writes(tmp_path):
    """csv's 131,072-character field limit is lifted: a 200,000-character field written by the
    BIF writer reads back (the upload path must never trip on its own bytes)."""
    m = run(tmp_path, encode(bills(1)))
    lines = m.raw[0].split(b"\r\n")
    fields = next(csv.reader([lines[1].decode()]))
    fields[-1] = "y" * 200_000
    lines[1] = encode_row(fields).removesuffix("\r\n").encode()
    data = b"\r\n".join(lines)
    assert any(len(v) == 200_000 for v in read_bif(data).invoices().__next__()["IH"].values())


def test_check_bif_flags_a_control_character_that_reached_a_bif(tmp_path):
    m = run(tmp_path, encode(bills(2)))
    tampered = m.raw[0].replace(b"A001", b"A0\x001", 1)
    assert any("control character" in p and "U+0000" in p for p in check_bif(tampered, "x.BIF"))


def test_warn_heavy_bills_stay_on_the_column_path_with_the_same_output(tmp_path, monkeypatch):
    """Two bills in three with a warned phone, one in three a warned email, 1 % rejected: the
    column path blanks and warns a column at a time — the same bytes, rejects and warnings (in
    the same order) as the per-bill path — and only the rejected bills reach map_bill."""
    path = aus_files.write_file(tmp_path / NAME, 3_000, per_bill=aus_files.warn_heavy)
    data = path.read_bytes()
    settings = dataclasses.replace(SETTINGS, reject_threshold_pct=100, max_invoices_per_file=1_000)
    by_columns = map_aus(data, NAME, settings, tmp_path / "columns", DAY, workers=1, range_bytes=200_000)
    by_bills = map_aus(data, NAME, settings, tmp_path / "bills", DAY, workers=1, strategy="lines")
    assert_same_output(by_columns, by_bills)
    assert by_columns.warning_counts["Phone invalid, left blank"] > 1_500
    assert by_columns.warning_counts["Email invalid, left blank"] > 700
    assert 0 < len(by_columns.rejects) < 100
    assert by_columns.stats.strategy == "ranges"
    assert by_columns.stats.per_bill == len(by_columns.rejects)  # warned bills never leave the column path


def test_column_quoting_in_one_pass_is_encode_field_on_every_value():
    """_render quotes a column's values with one regex substitution over the joined column:
    the same values as encode_field one by one, for values made of , " spaces and letters."""
    from icbridge.layouts.bif import encode_field
    from icbridge.mapping.columnar import quote_column

    rng = random.Random(14)
    for _ in range(300):
        values = ["".join(rng.choice(' ,"aB1') for _ in range(rng.randrange(6))) for _ in range(rng.randrange(1, 40))]
        assert quote_column(values) == list(map(encode_field, values)), values


def test_column_patterns_in_re2_accept_what_pythons_re_accepts():
    """A column's unchanged-pattern (one fullmatch over the column joined by SEP) is compiled
    by RE2 where RE2 reads it as Python does: on columns of valid, odd and broken values
    (non-ASCII digits, 29 February, year 0000, blanks, separators), it answers as re does."""
    import re

    from icbridge.mapping.columnar import SEP, column_pattern
    from icbridge.mapping.values import UNCHANGED

    rng = random.Random(3)
    pieces = ["0", "1", "2", "9", "/", ".", "-", "A", "Z", "a", " ", "\u0663", "é", "@", ",", "x"]
    samples = ["02/29/2024", "02/28/2026", "12/31/0000", "12/31/0001", "13/01/2026", "10.00", "-0.50", "01.00",
               "1.5", "NH", "nh", "", "5", "a@b.co"]
    compiled = {}
    for kind, one in UNCHANGED.items():
        pattern = f"(?:{one})?(?:\x1f(?:{one})?)*+"
        compiled[kind] = (column_pattern(pattern), re.compile(pattern))
    assert {k for k, (ours, _) in compiled.items() if not isinstance(ours, re.Pattern)} == {
        "date", "money", "decimal", "state"}  # the ASCII-only ones; account and email use \\s
    for _ in range(3000):
        values = [rng.choice(samples) if rng.random() < 0.6 else "".join(rng.choices(pieces, k=rng.randrange(12)))
                  for _ in range(rng.randrange(1, 6))]
        joined = SEP.join(values)
        for kind, (ours, reference) in compiled.items():
            assert (ours.fullmatch(joined) is not None) == (reference.fullmatch(joined) is not None), (kind, values)


def test_block_table_has_the_columns_and_rows_of_a_plain_table():
    """BlockTable cuts each line once and splits a repeated prefix once per block: every
    column and row equal the plain Table's of the same lines, and block_starts are the lines
    whose prefix differs from the line before's."""
    from icbridge.mapping.tables import BlockTable, Table

    rng = random.Random(7)
    width, prefix = 7, 4
    lines: list[str] = []
    for _ in range(400):
        head = [rng.choice(["", "a", "b", "é", "a b"]) for _ in range(prefix)]
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.1:
                head = [*head[:-1], "x"]  # a line that disagrees with its bill's first
            lines.append("|".join(head + [rng.choice(["", "1", "2.50", "M-1"]) for _ in range(width - prefix)]))
    plain = Table("|".join(lines).split("|"), width)
    blocks = BlockTable(lines, width, prefix)
    assert blocks.rows == plain.rows == len(lines)
    for src in range(width):
        assert blocks.column(src) == plain.column(src), src
    assert all(blocks.row(i) == plain.row(i) for i in range(len(lines)))
    heads = ["|".join(plain.row(i)[:prefix]) for i in range(len(lines))]
    assert blocks.block_starts == [0] + [i for i in range(1, len(lines)) if heads[i] != heads[i - 1]]
    from icbridge.layouts.bif import tuple_getter

    for picked in (blocks.block_starts, blocks.block_starts[::3], sorted(rng.sample(range(len(lines)), 50))):
        fresh = BlockTable(lines, width, prefix)  # no column made yet: values come from the blocks
        for src in range(width):
            assert fresh.at_lines(src, picked, tuple_getter(picked)) == tuple_getter(picked)(plain.column(src))


@pytest.mark.parametrize(
    ("change", "whole"),
    [
        (lambda lines: None, True),
        (lambda lines: lines.__setitem__(5, lines[5] + "|x"), False),  # one field too many, in the rest
        (lambda lines: lines.__setitem__(5, lines[5].rsplit("|", 1)[0]), False),  # one too few
        (lambda lines: lines.__setitem__(0, "x|" + lines[0]), False),  # one too many in a block's prefix
        (lambda lines: lines.__setitem__(0, lines[0].replace("|", "", 1)), False),  # one too few there
        # one too few in a later line of a block (a new block), one too many in another: the
        # total count of fields is right, each line's is not
        (lambda lines: (lines.__setitem__(1, lines[1].replace("|", "", 1)),
                        lines.__setitem__(7, "y|" + lines[7])), False),
        (lambda lines: lines.__setitem__(3, "|".join(["a"] * 9)), False),  # nothing but pipes
    ],
)
def test_a_block_table_knows_when_a_line_has_another_field_count(change, whole):
    """A BlockTable checks every line's field count from its cut (no count per line): a
    table that is not whole is not used (_table gives None, and the lines' bills go to
    map_bill, which rejects the bill whose line is wrong)."""
    from icbridge.mapping.tables import BlockTable, make_table

    width, prefix = 6, 3
    lines = [f"B{i // 3}|a{i // 3}|c|{i % 3 + 1}|v|w" for i in range(12)]
    change(lines)
    assert BlockTable(lines, width, prefix).whole is whole
    text = "\n".join(lines) + "\n"
    table = make_table(text, lines, width, False, prefix)
    assert (table is not None) is whole
    assert (make_table(text, lines, width, False) is not None) is whole  # a plain Table counts each line


def test_spaced_finds_every_space_split_would_trim():
    """_spaced (numpy over a range's bytes) says a value begins or ends with a space exactly
    when the text, its CR LF made LF, has a space after a '|', a line break or at its start,
    or before a '|' or a line break; in cp1252 and UTF-8 alike."""
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice(["a", "é", "€", " ", "|", "\r\n", "\n", "x y"]) for _ in range(rng.randrange(1, 12)))
        text += "\n"
        lf = text.replace("\r\n", "\n")
        expected = lf[:1] == " " or any(pair in lf for pair in ("| ", " |", "\n ", " \n"))
        for encoding in ("cp1252", "utf-8"):
            assert has_edge_spaces(text.encode(encoding)) is expected, (text, encoding)


def test_the_aus_layout_maps_through_block_tables(tmp_path, monkeypatch):
    """The AUS column order puts every bill field before the line fields, so ranges are cut
    into BlockTables (the equivalence tests above then compare their output with map_bill's)."""
    path = aus_files.write_file(tmp_path / NAME, 2_000)
    result = map_aus(path, NAME, SETTINGS, tmp_path / "out", date(2026, 11, 1), workers=1)
    assert result.stats.strategy == "ranges" and result.stats.block_tables == result.stats.range_tasks >= 1
    mapper = BillMapper(read_aus(path.read_bytes(), NAME), SETTINGS)
    assert mapper.columnar.prefix == 25  # the bill fields: every one before the line fields




@pytest.mark.parametrize("ranges", [True, False])
@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig"])
def test_nbsp_at_the_edges_of_values_is_trimmed_like_a_space(tmp_path, monkeypatch, ranges, encoding):
    """Issue 22 item 8: NBSP (cp1252 0xA0) at the edges of InvoiceNumber, CustomerName,
    ServiceAddress and before an amount: trimmed as a blank is (the spec's rule), on both
    paths; the bill is not rejected and the trailer agrees. An NBSP inside a value stays."""
    nb = "\u00a0"
    rows = [row(BillNumber=f"{nb}B-1{nb}", CustomerName=f"{nb}Smith{nb}Jones{nb}", ServiceAddress=f"12 Elm St{nb}",
                AmountDue=f"{nb}100.50", AccountNumber=f"{nb}1001")]
    rows[0]["LineNumber"] = "1"
    data = encode(rows, trailer=trailer_for([row(AmountDue="100.50")]), encoding=encoding)
    m = run(tmp_path, data, workers=1, strategy="ranges" if ranges else "lines")
    inv = m.invoice
    assert m.reasons() == []
    assert inv["IH"]["InvoiceNumber"] == "B-1" and inv["IH"]["TotalAmountDue"] == "100.50"
    assert inv["CR"]["CustomerName"] == f"Smith{nb}Jones"
    assert inv["CR"]["AccountNumber"] == "1001"
    assert inv["ID"][0]["CustomField2"] == "12 Elm St"
