"""What the SOAP-method operators share that needs no Airflow: the statuses a call ends in,
one judge for every vendor's answer, the coercion of templated inputs (templates render
strings; a missing value is an error, never a default) and XCom-safe values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from icbridge.hooks.ftps import parse_bool
from icbridge.soap.cis import CisResult, money

__all__ = ["BUSINESS", "STATUSES", "as_bool", "as_datetime", "as_money", "jsonable", "judge"]

STATUSES = ("ok", "not_found", "refused", "invalid", "error", "unknown")
"""ok; not_found (the service does not know the account/bill); refused (a business failure:
Success=false / ResponseCode != 0); invalid (bad input or bad payload, never sent or not
stored); error (transport error after the allowed tries, or a money call not sent);
unknown (a money call sent without a usable answer: it may have been applied)."""

BUSINESS = ("not_found", "refused", "invalid")




def as_bool(value: Any, name: str) -> bool:
    if value is None or value == "":
        _missing(name)
    try:
        return parse_bool(value, False, name)
    except ValueError:
        raise ValueError(f"{name} must be true or false, got {value!r}") from None


def as_money(value: Any, name: str) -> Decimal:
    if value is None or value == "":
        _missing(name)
    try:
        amount = money(value)
    except (InvalidOperation, TypeError):
        raise ValueError(f"{name} must be an amount, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be an amount, got {value!r}")
    return amount


def as_datetime(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if value is None or value == "":
        _missing(name)
    try:
        return datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be an ISO date-time, got {value!r}") from None


def _missing(name: str) -> Any:
    raise ValueError(f"{name} is required")


def jsonable(value: Any) -> Any:
    """Decimal -> str (exact), datetime/date -> ISO text, dataclasses -> dicts; bytes never."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def judge(result: Any) -> tuple[str, str]:
    """One status for any answer: CIS ``ok``/``message``, IC ``success``/``error_message``, None = not found."""
    if result is None:
        return "not_found", "not found"
    if isinstance(result, CisResult):
        if result.ok:
            return "ok", result.message
        return ("not_found" if result.not_found else "refused"), result.message or "refused"
    success = getattr(result, "success", None)
    if success is not None:
        return ("ok", "") if success else ("refused", getattr(result, "error_message", "") or "refused")
    return "ok", ""
