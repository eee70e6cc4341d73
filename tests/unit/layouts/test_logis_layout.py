"""Logis Payment Export File layout (Airflow-free): window, method mapping, exact bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from icbridge.layouts.logis import (
    COLUMNS,
    UnknownPaymentType,
    build_export,
    business_day,
    day_window,
    file_name,
    in_window,
    payment_method,
)
from icbridge.mapping.accounts import drop_conveyance_suffix

NY = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class P:
    payment_guid: str
    payment_date: datetime
    payment_amount: Decimal = Decimal("10.00")
    convenience_fee: Decimal = Decimal("0.00")
    payment_type: str = "CreditCard"
    account_number: str = "1001"
    invoice_number: str = ""
    cashier_name: str = ""
    channel: str = "CloudPay"


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ("100234", "100234"),
        ("100234CV-202603081530", "100234"),
        ("100234-CV-202603081530", "100234"),
        ("100234 CV-20260308153045", "100234"),
        ("AB-7-CV-2026030815304", "AB-7"),  # 13 digits
        ("100234-CV-2026030815", "100234-CV-2026030815"),  # 10 digits: not a suffix
        ("100234-CV-202603081530451", "100234-CV-202603081530451"),  # 15 digits: not a suffix
        ("100234-cv-202603081530", "100234-cv-202603081530"),  # the seed writes CV- upper case
        ("CV-12345-X", "CV-12345-X"),
    ],
)
def test_drop_conveyance_suffix(account, expected):
    assert drop_conveyance_suffix(account) == expected


def test_an_account_that_is_only_a_suffix_is_an_error():
    with pytest.raises(ValueError, match="only a conveyance suffix"):
        drop_conveyance_suffix("CV-202603081530")


@pytest.mark.parametrize(
    ("ic_type", "method"),
    [("CreditCard", "CC"), ("PayPal", "CC"), ("Credit Card", "CC"), ("DebitCard", "CC"), ("ACH", "ACH"),
     ("eCheck", "ACH"), ("Cash", "CASH"), ("CHECK", "CHECK")],
)
def test_payment_types_map_to_logis_methods(ic_type, method):
    assert payment_method(ic_type, "g") == method


def test_unknown_payment_type_names_the_payment_and_biller_can_add_it():
    with pytest.raises(UnknownPaymentType, match="payment G-42: PaymentType 'GiftCard'"):
        payment_method("GiftCard", "G-42")
    assert payment_method("GiftCard", "G-42", {"Gift Card": "CASH"}) == "CASH"


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 3, 9), 24), (date(2026, 7, 4), 24)],
)
def test_window_is_local_closure_to_closure_including_dst_days(day, hours):
    start, end = day_window(day, NY)
    assert end - start == timedelta(hours=hours)
    assert end.astimezone(NY).replace(tzinfo=None) == datetime.combine(day, datetime.min.time()).replace(
        hour=23, minute=59
    )
    assert day_window(day + timedelta(days=1), NY)[0] == end  # windows tile: nothing lost or doubled


def test_window_is_exclusive_at_start_and_inclusive_at_end():
    start, end = day_window(date(2026, 3, 8), NY)
    assert not in_window(P("a", start), start, end)
    assert in_window(P("b", start + timedelta(microseconds=1)), start, end)
    assert in_window(P("c", end), start, end)
    assert not in_window(P("d", end + timedelta(microseconds=1)), start, end)
    assert in_window(P("naive-utc", end.replace(tzinfo=None)), start, end)  # naive = UTC


@pytest.mark.parametrize(
    ("moment_local", "day"),
    [
        (datetime(2026, 3, 8, 23, 59), date(2026, 3, 8)),  # the scheduled run
        (datetime(2026, 3, 9, 8, 0), date(2026, 3, 8)),  # a manual run next morning
        (datetime(2026, 3, 8, 23, 58), date(2026, 3, 7)),  # the day is still open
    ],
)
def test_business_day_is_the_last_day_closed(moment_local, day):
    assert business_day(moment_local.replace(tzinfo=NY), NY) == day
    assert business_day(moment_local.replace(tzinfo=NY).astimezone(UTC), NY) == day


def test_file_is_byte_exact():
    day = date(2026, 3, 8)
    payments = [
        P("b-guid", datetime(2026, 3, 8, 14, 0, tzinfo=UTC), Decimal("100.5"), Decimal("2.95"), "PayPal",
          "55501-CV-202603011200", "INV-9", 'Smith, "Jo"'),
        P("a-guid", datetime(2026, 3, 8, 14, 0, tzinfo=UTC), Decimal("20.00"), Decimal("0"), "Cash", "55502", "",
          "Front desk"),
        P("c-guid", datetime(2026, 3, 8, 5, 30, 15), Decimal("-5.25"), Decimal("0.00"), "ACH", "55503"),  # naive UTC
    ]
    export = build_export(payments, bid="321", day=day, tz=NY)
    assert export.name == file_name("321", day) == "321_20260308_CLOUDPAY.CSV"
    assert export.content == (
        b"AccountNumber,InvoiceNumber,PaymentDate,Amount,ConvenienceFee,PaymentMethod,CashierName,Reference\r\n"
        b"55503,,2026-03-08 00:30:15,-5.25,0.00,ACH,,c-guid\r\n"
        b"55502,,2026-03-08 10:00:00,20.00,0.00,CASH,Front desk,a-guid\r\n"
        b'55501,INV-9,2026-03-08 10:00:00,100.50,2.95,CC,"Smith, ""Jo""",b-guid\r\n'
        b"TRAILER,3,115.25,2.95\r\n"
    )
    assert [c.name for c in COLUMNS] == export.content.split(b"\r\n")[0].decode().split(",")
    assert build_export(list(reversed(payments)), bid="321", day=day, tz=NY).content == export.content


def test_utf8_names_and_empty_day():
    export = build_export([P("g", datetime(2026, 3, 8, 14, tzinfo=UTC), cashier_name="Zoë Müller")],
                          bid="1", day=date(2026, 3, 8), tz=NY)
    assert "Zoë Müller".encode() in export.content
    empty = build_export([], bid="1", day=date(2026, 3, 8), tz=NY)
    assert empty.content.endswith(b"\r\nTRAILER,0,0.00,0.00\r\n") and empty.content.count(b"\r\n") == 2


def test_amount_with_more_than_two_decimals_is_refused():
    with pytest.raises(ValueError, match="payment x: Amount 1.005"):
        build_export([P("x", datetime(2026, 3, 8, 14, tzinfo=UTC), Decimal("1.005"))], bid="1",
                     day=date(2026, 3, 8), tz=NY)
