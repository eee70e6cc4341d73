"""check_bif's whole-file fast path must never change a result: it only accepts files the
record-by-record loop passes, and everything else is left to that loop."""

from __future__ import annotations

import random
from datetime import date

import pytest

from icbridge.layouts import bif
from icbridge.layouts.bif import check_bif
from icbridge.mapping.aus_to_bif import InvoiceSettings, map_aus
from icbridge.sim import aus_files

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


def slow_check(data: bytes, monkeypatch) -> list[str]:
    with monkeypatch.context() as m:
        m.setattr(bif, "_passes_whole", lambda text: False)
        return check_bif(data)


def test_good_file_takes_the_fast_path(good_bif):
    assert b'"Ann ""Q"", Jr."' in good_bif
    assert bif._passes_whole(good_bif.decode("utf-8"))
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
    """Random single-character damage (dates, amounts, flags, separators, quotes)."""
    rng = random.Random(1)
    text = good_bif.decode("utf-8")
    alphabet = '0123456789,/."- \r\nAZ'
    for _ in range(300):
        i = rng.randrange(len(text))
        data = (text[:i] + rng.choice(alphabet) + text[i + 1 :]).encode("utf-8")
        assert check_bif(data) == slow_check(data, monkeypatch), i
    feb29 = text.replace("03/01/2026", "02/29/2024").encode("utf-8")
    assert check_bif(feb29) == slow_check(feb29, monkeypatch) == []
