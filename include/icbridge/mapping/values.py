"""Value rules of the AUS export, one converter per column type (aus_columns.csv `type`).

A converter takes the trimmed source text and returns the BIF text. It raises BadValue
when the bill must be rejected; a *soft* converter returns None instead, meaning "leave
blank and warn" (phone, email, zip, state).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from icbridge.errors import FileError
from icbridge.layouts.bif import clean_text

_MONEY = re.compile(r"(-?)(\d+)(?:\.(\d{1,2}))?")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")
_EMAIL = re.compile(r"[^@\s,;]+@[^@\s,;]+\.[A-Za-z]{2,}")
_ZIP = re.compile(r"(\d{5})(?:-?(\d{4}))?")
_NOT_DIGIT = re.compile(r"\D")
_dates: dict[str, bool] = {}


class BadValue(FileError, ValueError):
    """The value breaks a rule that rejects the bill."""


def as_text(value: str) -> str:
    return clean_text(value)


def as_account(value: str) -> str:
    value = clean_text(value)
    if len(value) > 50:
        raise BadValue(f"longer than 50 characters ({len(value)})")
    return value


def is_digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() also takes digits such as '²' that int() refuses."""
    return value.isascii() and value.isdigit()


def as_digits(value: str) -> str:
    if value and not is_digits(value):
        raise BadValue(f"{value!r} is not digits")
    return value


def is_date(value: str) -> bool:
    """MM/DD/YYYY that exists on the calendar (memoised: bills repeat few dates)."""
    ok = _dates.get(value)
    if ok is None:
        ok = len(value) == 10 and value[2] == "/" and value[5] == "/"
        if ok:
            try:
                date(int(value[6:]), int(value[:2]), int(value[3:5]))
            except ValueError:
                ok = False
        _dates[value] = ok
    return ok


def as_date(value: str) -> str:
    if value and not is_date(value):
        raise BadValue(f"{value!r} is not a date MM/DD/YYYY")
    return value


def parse_money(value: str) -> str | None:
    """`-?digits[.d[d]]` written with exactly two decimals, or None when it does not parse."""
    m = _MONEY.fullmatch(value)
    if not m:
        return None
    sign, whole, frac = m.groups()
    return f"{sign}{int(whole)}.{(frac or '').ljust(2, '0')}"


def as_money(value: str) -> str:
    if not value:
        return value
    money = parse_money(value)
    if money is None:
        raise BadValue(f"{value!r} is not an amount with at most 2 decimals")
    return money


def as_decimal(value: str) -> str:
    if value and not _DECIMAL.fullmatch(value):
        raise BadValue(f"{value!r} is not a decimal number")
    return value


def as_flag(value: str) -> str:
    """Y/N in any case to 1/0; blank stays blank."""
    if not value:
        return value
    upper = value.upper()
    if upper == "Y":
        return "1"
    if upper == "N":
        return "0"
    raise BadValue(f"{value!r} is not Y or N")


def as_line_number(value: str) -> str:
    if not is_digits(value) or int(value) < 1:
        raise BadValue(f"{value!r} is not an integer >= 1")
    return value


def as_phone(value: str) -> str | None:
    """The 10 digits only, any punctuation dropped; anything else is blanked and warned."""
    digits = _NOT_DIGIT.sub("", value)
    return digits if len(digits) == 10 else None


def as_email(value: str) -> str | None:
    return value if _EMAIL.fullmatch(value) else None


def as_zip(value: str) -> str | None:
    m = _ZIP.fullmatch(value)
    if not m:
        return None
    return f"{m.group(1)}-{m.group(2)}" if m.group(2) else m.group(1)


def as_state(value: str) -> str | None:
    return value.upper() if len(value) == 2 and value.isalpha() else None


CONVERTERS: dict[str, Callable[[str], str | None]] = {
    "text": as_text,
    "account": as_account,
    "digits": as_digits,
    "date": as_date,
    "money": as_money,
    "decimal": as_decimal,
    "yn": as_flag,
    "int": as_line_number,
    "phone": as_phone,
    "email": as_email,
    "zip": as_zip,
    "state": as_state,
}
SOFT_TYPES = frozenset({"phone", "email", "zip", "state"})
# Types whose converted value never holds a comma or a quote (digits, signs, dots, slashes,
# hyphens, letters), so a BIF line never quotes it: the column path skips looking.
NEVER_QUOTED = frozenset({"digits", "date", "money", "decimal", "yn", "int", "phone", "zip", "state"})

# Values each converter returns unchanged and never rejects, by type: a row whose values of
# these types all match needs no conversion call for them (checked in one regex per row).
# Deliberately narrower than the converters (ASCII digits only; 29 February and odd forms
# are left to the converter), so a match never changes a result.
_SAFE_DATE = (
    r"(?:(?:0[1-9]|1[0-2])/(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])/(?:29|30)|(?:0[13578]|1[02])/31)"
    r"/(?!0000)[0-9]{4}"
)
UNCHANGED: dict[str, str] = {
    "account": r"[^\s\x1f](?:[^\r\n\t\x1f]{0,48}[^\s\x1f])?",  # trimmed, no CR/LF/TAB, <= 50
    "date": _SAFE_DATE,
    "money": r"-?(?:0|[1-9][0-9]*)\.[0-9]{2}",
    "decimal": r"-?[0-9]+(?:\.[0-9]+)?",
    "email": r"[^@\s,;\x1f]+@[^@\s,;\x1f]+\.[A-Za-z]{2,}",
    "state": r"[A-Z]{2}",
}
