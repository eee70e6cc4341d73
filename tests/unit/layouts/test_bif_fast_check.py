"""check_bif's whole-file fast path must never change a result: it only accepts files the
record-by-record loop passes, and everything else is left to that loop."""

from __future__ import annotations

import random
import re
from datetime import date

import pytest

from icbridge.layouts import bif, bif_proof
from icbridge.layouts.bif import check_bif
from icbridge.layouts.re2_adapter import as_re2
from icbridge.mapping.aus_to_bif import InvoiceSettings, map_aus
from icbsim import aus_files

NAME = "123_20261101_UB.TXT"
SETTINGS = InvoiceSettings(
    bid="123", biller_guid="G-1", invoice_format_guid="F,1", invoice_type_id="7", multiple_meters=True
)


@pytest.fixture(scope="module")
def good_bif(tmp_path_factory) -> bytes:
    rows = aus_files.make_rows(300, seed=3)
    for row in rows:
        if row["BillNumber"] == rows[0]["BillNumber"]:
            row["CustomerName"] = 'Ann "Q", Jr.'  # quoted fields in the BIF
    out = tmp_path_factory.mktemp("bif")
    result = map_aus(aus_files.format_file(rows), NAME, SETTINGS, out, date(2026, 11, 1), workers=1)
    return result.bifs[0].path.read_bytes()


def slow_check(data: bytes, monkeypatch=None) -> list[str]:
    return check_bif(data, prove=False)


def test_good_file_takes_the_fast_path(good_bif):
    assert b'"Ann ""Q"", Jr."' in good_bif
    assert bif_proof.passes_whole(good_bif)
    assert check_bif(good_bif) == []


MUTATIONS = [
    lambda t, r: t.replace("\r\nCR,", "\r\nCR,,", 1),  # column count
    lambda t, r: t.replace("\r\nID,", "\r\nXX,", 1),  # unknown row type
    lambda t, r: t.replace("/2026,", "/0000,", 1),  # year 0
    lambda t, r: t.replace("/2026,", "/2026 ,", 1),
    lambda t, r: t.replace("\r\n", "\n", 1),
    lambda t, r: t.replace("\r\n", "\r\n\r\n", 2),
    lambda t, r: t + "ID",  # no final CRLF
    lambda t, r: t.replace(",1,", ',"1",', 1),  # a quoted flag: fine for the loop, not for the regex
    lambda t, r: t.replace('"Ann ""Q"", Jr."', '"Ann\r\nQ"', 1),  # quoted line break
    lambda t, r: t.replace("CR,", "IH,", 1),
    lambda t, r: t[: t.index("\r\nID,")] + t[t.index("\r\nID,") + 2 :],
]


@pytest.mark.parametrize("mutate", range(len(MUTATIONS)))
def test_same_result_as_the_record_loop(good_bif, mutate, monkeypatch):
    text = MUTATIONS[mutate](good_bif.decode("utf-8"), None)
    data = text.encode("utf-8")
    assert check_bif(data) == slow_check(data, monkeypatch)


def test_random_damage_same_result_as_the_record_loop(good_bif, monkeypatch):
    """Random single-character damage (dates, amounts, flags, separators, quotes, non-ASCII
    digits and letters, control characters)."""
    rng = random.Random(1)
    text = good_bif.decode("utf-8")
    # U+0663: a digit to Python's str \\d, not to the RE2 pattern; TAB and U+0001: control characters,
    # which the fast path's pattern refuses (the record loop names them)
    alphabet = '0123456789,/."- \r\nAZ\u0663é\t\x01'
    for _ in range(400):
        i = rng.randrange(len(text))
        data = (text[:i] + rng.choice(alphabet) + text[i + 1 :]).encode("utf-8")
        assert check_bif(data) == slow_check(data, monkeypatch), i
    feb29 = text.replace("03/01/2026", "02/29/2024").encode("utf-8")
    assert check_bif(feb29) == slow_check(feb29, monkeypatch) == []


def _python_invoice_pattern() -> re.Pattern:
    """The run-of-invoices pattern as Python's engine takes it (the reference of the RE2 one)."""
    rows = {t: bif_proof.row_pattern(layout) for t, layout in bif.registry().items()}
    return re.compile(f"(?:{rows['IH']}{rows['CR']}(?:{rows['ID']})*+)*+".encode())


def test_the_re2_proof_of_invoices_agrees_with_pythons_engine(good_bif):
    """invoice_totals proves a mapped chunk's rows with RE2 (as_re2): on whole chunks,
    every mutation above and random damage of any kind (separators, quotes, CR/LF, digits,
    non-ASCII, year 0000, a February 29th), it accepts exactly what Python's engine accepts
    with the original pattern, possessive quantifiers and lookahead included."""
    reference = _python_invoice_pattern()
    chunk = good_bif.split(b"\r\n", 1)[1]  # the invoices, without the FH row
    text = chunk.decode("utf-8")
    candidates = [text, *(mutate(text, None) for mutate in MUTATIONS)]
    rng = random.Random(14)
    alphabet = '0123456789,/."- \r\nAZé\x00'
    for _ in range(600):
        i = rng.randrange(len(text))
        candidates.append(text[:i] + rng.choice(alphabet) + text[i + 1 :])
    candidates += [text.replace("/2026,", "/0000,", 1), text.replace("/2026,", "/0001,", 1),
                   text.replace("03/01/2026", "02/29/2024"), text.replace(",1,", ',"1",', 1)]
    accepted = 0
    for candidate in candidates:
        data = candidate.encode("utf-8")
        ours = bif_proof.invoice_totals(data) is not None
        assert ours == (reference.fullmatch(data) is not None), candidate[:200]
        accepted += ours
    assert 0 < accepted < len(candidates)  # both answers were seen


def test_a_pattern_re2_cannot_take_is_refused():
    with pytest.raises(ValueError, match="not in RE2's syntax"):
        as_re2("(?=x)y")
    with pytest.raises(ValueError, match="otherwise"):
        as_re2(r"[^\s]+", for_bytes=False)  # Python's \s takes U+00A0, RE2's does not
    with pytest.raises(ValueError, match="otherwise"):
        as_re2(r"\s")  # for bytes too: Python's takes the vertical tab, RE2's does not
    with pytest.raises(ValueError, match="otherwise"):
        as_re2(r"\d", for_bytes=False)
    assert as_re2(r"\d+").fullmatch(b"0123456789")  # for bytes, both read \d as ASCII
    assert as_re2(r"[0-9]+", for_bytes=False).fullmatch("\u0663") is None


def test_a_year_of_non_ascii_zeros_is_not_a_date(monkeypatch):
    """FileCreationDate 11/01/U+0660x4 (Arabic-Indic zeros): Python's str \\d took them, so the
    whole-file fast path, when it ran over the text, passed the file; over the bytes (RE2,
    ASCII digits) it leaves it to the record loop, which names the date (found in review)."""
    layout = bif.registry()["FH"]
    fh = layout.blank()
    fh[layout.index("BillerGuid")] = "G"
    fh[layout.index("FileCreationDate")] = "11/01/\u0660\u0660\u0660\u0660"
    fh[layout.index("InvoiceCount")] = "0"
    fh[layout.index("TotalInvoiceAmount")] = "0.00"
    data = bif.encode_row(fh).encode("utf-8")
    problems = check_bif(data)
    assert problems == slow_check(data, monkeypatch)
    assert any("FileCreationDate" in p for p in problems), problems


def test_a_column_pattern_answers_a_lone_surrogate():
    from icbridge.mapping.columnar import column_pattern

    assert column_pattern(r"[0-9]+").fullmatch("12\ud800") is None
