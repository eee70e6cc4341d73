"""Logis CloudPay "Payment Export File": columns as data, the business-day window, the file.

See shared/specs/logis-payment-export.md. Airflow-free: the flow (icbridge.flows.
payment_export) fetches payments and delivers; this module decides which payments belong
to a day and turns them into the exact bytes of the file.

Time rules (the project's reading of the spec, documented in docs/payment-export.md):

* The business day D closes at 23:59:00 local time (the biller's batch closure, seed 004);
  the file for D holds every payment with closure(D-1) < PaymentDate <= closure(D). Both
  ends are computed from local wall-clock times with zoneinfo, so DST days are 23 or 25
  hours long, and consecutive windows tile the time line: nothing lost, nothing doubled.
* IC's PaymentDate without an offset is taken as UTC (the simulator's contract: it stores
  and returns UTC); one with an offset is converted. The file shows it in the biller's time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from icbridge.errors import FileError
from icbridge.mapping.accounts import drop_conveyance_suffix

__all__ = [
    "CLOSURE",
    "COLUMNS",
    "METHODS",
    "PAYMENT_TYPES",
    "ExportFile",
    "LogisColumn",
    "UnknownPaymentType",
    "build_export",
    "business_day",
    "closure",
    "day_window",
    "file_name",
    "in_window",
    "payment_method",
]

CLOSURE = time(23, 59)  # batch closure, biller local time (seed 004)
METHODS = ("CC", "ACH", "CASH", "CHECK")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class LogisColumn:
    name: str
    source: str  # what fills it, for people and docs


COLUMNS: tuple[LogisColumn, ...] = (
    LogisColumn("AccountNumber", "IC AccountNumber, conveyance suffix dropped (rule 4)"),
    LogisColumn("InvoiceNumber", "IC InvoiceNumber, may be empty"),
    LogisColumn("PaymentDate", "IC PaymentDate in the biller's time zone, YYYY-MM-DD HH:MM:SS"),
    LogisColumn("Amount", "IC PaymentAmount, 2 decimals"),
    LogisColumn("ConvenienceFee", "IC ConvenienceFee, 2 decimals"),
    LogisColumn("PaymentMethod", "IC PaymentType mapped by PAYMENT_TYPES: CC, ACH, CASH or CHECK"),
    LogisColumn("CashierName", "IC CashierName, may be empty"),
    LogisColumn("Reference", "IC PaymentGUID (Logis refuses a Reference it has seen)"),
)

# IC PaymentType, normalised (lower case, letters only) -> Logis PaymentMethod. PayPal is
# CC (spec). A type not listed fails the file naming the payment: guessing could post a
# card payment as cash. Billers add types in YAML (payment_export.payment_types).
PAYMENT_TYPES: Mapping[str, str] = {
    "creditcard": "CC",
    "credit": "CC",
    "cc": "CC",
    "debitcard": "CC",
    "debit": "CC",
    "card": "CC",
    "paypal": "CC",
    "ach": "ACH",
    "echeck": "ACH",
    "eft": "ACH",
    "bankaccount": "ACH",
    "cash": "CASH",
    "check": "CHECK",
    "cheque": "CHECK",
}


class PaymentLike(Protocol):
    payment_guid: str
    account_number: str
    invoice_number: str
    payment_date: datetime | None
    payment_amount: Decimal
    convenience_fee: Decimal
    payment_type: str
    cashier_name: str


class UnknownPaymentType(FileError, ValueError):  # noqa: N818 - names the rule broken
    """A payment whose IC PaymentType has no Logis PaymentMethod: the file is not made."""


def _type_key(payment_type: str) -> str:
    return re.sub(r"[^a-z]", "", payment_type.lower())


def payment_method(payment_type: str, payment_guid: str, extra: Mapping[str, str] | None = None) -> str:
    """The Logis PaymentMethod of an IC PaymentType (``extra``: the biller's own additions)."""
    key = _type_key(payment_type or "")
    table = {**PAYMENT_TYPES, **{_type_key(k): v for k, v in (extra or {}).items()}}
    method = table.get(key)
    if method is None:
        raise UnknownPaymentType(
            f"payment {payment_guid}: PaymentType {payment_type!r} has no Logis PaymentMethod; "
            f"add it under payment_export.payment_types in the biller's YAML (one of {', '.join(METHODS)})"
        )
    return method


def closure(day: date, tz: tzinfo) -> datetime:
    """The instant business day ``day`` closes (23:59 local), in UTC."""
    return datetime.combine(day, CLOSURE, tzinfo=tz).astimezone(UTC)


def day_window(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC: the file for ``day`` holds start < PaymentDate <= end."""
    return closure(day - timedelta(days=1), tz), closure(day, tz)


def business_day(moment: datetime, tz: tzinfo) -> date:
    """The last business day closed at or before ``moment`` (a run's logical date).

    A run scheduled at D 23:59 local exports D; a run triggered by hand the next morning
    exports D too, never a day that is still open.
    """
    if moment.tzinfo is None:
        raise ValueError("business_day needs an aware datetime")
    day = moment.astimezone(tz).date()
    return day if moment >= closure(day, tz) else day - timedelta(days=1)


def as_utc(moment: datetime) -> datetime:
    """IC times: naive ones are UTC (see the module docstring)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def in_window(payment: PaymentLike, start: datetime, end: datetime) -> bool:
    if payment.payment_date is None:
        raise ValueError(f"payment {payment.payment_guid}: no PaymentDate")
    return start < as_utc(payment.payment_date) <= end


def file_name(bid: str, day: date) -> str:
    return f"{bid}_{day:%Y%m%d}_CLOUDPAY.CSV"


def _money(value: Any, what: str, payment_guid: str) -> Decimal:
    amount = Decimal(str(value if value is not None else 0))
    rounded = amount.quantize(CENT)
    if rounded != amount:
        raise ValueError(f"payment {payment_guid}: {what} {amount} has more than 2 decimals")
    return rounded


@dataclass(frozen=True)
class ExportFile:
    """One day's file: its name, exact bytes and what is in it."""

    name: str
    day: date
    content: bytes
    payments: int
    amount: Decimal
    fees: Decimal

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)


def build_export(
    payments: Iterable[PaymentLike],
    *,
    bid: str,
    day: date,
    tz: tzinfo,
    extra_types: Mapping[str, str] | None = None,
) -> ExportFile:
    """The file for ``day`` from payments already chosen for it (see ``in_window``).

    Rows are ordered by PaymentDate (the instant, so the repeated hour of a fall-back day
    keeps its true order) then PaymentGUID; the same payments give the same bytes.
    """
    chosen = sorted(payments, key=lambda p: (as_utc(p.payment_date), p.payment_guid))  # type: ignore[arg-type]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([c.name for c in COLUMNS])
    total = fees = Decimal("0.00")
    seen: set[str] = set()
    for p in chosen:
        if p.payment_guid in seen:
            raise ValueError(f"payment {p.payment_guid}: listed twice by IC")
        seen.add(p.payment_guid)
        amount = _money(p.payment_amount, "Amount", p.payment_guid)
        fee = _money(p.convenience_fee, "ConvenienceFee", p.payment_guid)
        total += amount
        fees += fee
        try:
            account = drop_conveyance_suffix(p.account_number or "")
        except ValueError as exc:
            raise ValueError(f"payment {p.payment_guid}: {exc}") from None
        if not account:
            raise ValueError(f"payment {p.payment_guid}: no AccountNumber")
        local = as_utc(p.payment_date).astimezone(tz)  # type: ignore[arg-type]
        writer.writerow(
            [
                account,
                p.invoice_number or "",
                f"{local:%Y-%m-%d %H:%M:%S}",
                f"{amount:.2f}",
                f"{fee:.2f}",
                payment_method(p.payment_type, p.payment_guid, extra_types),
                p.cashier_name or "",
                p.payment_guid,
            ]
        )
    writer.writerow(["TRAILER", len(chosen), f"{total:.2f}", f"{fees:.2f}"])
    return ExportFile(
        name=file_name(bid, day),
        day=day,
        content=out.getvalue().encode("utf-8"),
        payments=len(chosen),
        amount=total,
        fees=fees,
    )
