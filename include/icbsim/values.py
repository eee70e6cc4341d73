"""Values as every simulator (IC, inHance, AUS) reads them from a SOAP request and keeps them in SQLite.

Request arguments come from :class:`~icbsim.soapserver.SoapServer` as strings (or None when
absent); ``arg_*`` turn one into Python or raise the :class:`~icbsim.soapserver.SoapFault` an
ASMX service answers for a request it cannot read (the caller's fault). Stored values have one
form each: money to the cent (:func:`money`), times as sortable naive-UTC text (:func:`stamp`),
so that SQL comparisons and range filters are right.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from icbsim.envelopes import SoapFault

__all__ = [
    "arg_bool",
    "arg_datetime",
    "arg_decimal",
    "arg_int",
    "arg_str",
    "bad_value",
    "cents",
    "money",
    "naive_utc",
    "sim_pragmas",
    "stamp",
]

CENT = Decimal("0.01")


# request arguments ------------------------------------------------------------------------------


def bad_value(name: str, value: Any, kind: str) -> SoapFault:
    """The fault of an argument that is not a valid ``kind`` (ASMX's "unable to read request")."""
    return SoapFault(f"Server was unable to read request. ---> {name} {value!r} is not a valid {kind}")


def arg_str(args: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string argument as given (None when absent); ``required``: absent or empty is a fault."""
    value = args.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_value(name, value, "string")
    if required and not value:
        raise SoapFault(f"{name} is required")
    return value


def arg_int(args: dict[str, Any], name: str) -> int:
    """An int argument (surrounding blanks allowed); absent or not a number is a fault."""
    value = args.get(name)
    try:
        return int(str(value).strip())
    except ValueError:
        raise bad_value(name, value, "int") from None


def arg_decimal(args: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    """A finite decimal argument; absent is None when not ``required``, else a fault."""
    value = args.get(name)
    if value is None and not required:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise bad_value(name, value, "decimal") from None
    if not number.is_finite():
        raise bad_value(name, value, "decimal")
    return number


def arg_bool(args: dict[str, Any], name: str) -> bool | None:
    """An xs:boolean argument (true/false/1/0, any case); None when absent."""
    value = args.get(name)
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise bad_value(name, value, "boolean")


def arg_datetime(args: dict[str, Any], name: str) -> datetime:
    """An xs:dateTime argument as a naive UTC datetime (a naive one is taken as given)."""
    value = args.get(name)
    try:
        return naive_utc(datetime.fromisoformat(str(value).strip()))
    except ValueError:
        raise bad_value(name, value, "dateTime") from None


# stored values ----------------------------------------------------------------------------------


def naive_utc(moment: datetime) -> datetime:
    """An aware time converted to UTC without its zone; a naive one unchanged."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def stamp(moment: datetime) -> str:
    """One sortable text form for stored times, so SQL range filters compare correctly."""
    return naive_utc(moment).isoformat(timespec="microseconds")


def money(value: Decimal | int | str | float) -> Decimal:
    """Money to the cent; a float goes through str() so 0.1 stays 0.1 (icbridge.soap.cis.money
    does the same without rounding, but imports zeep, which the IC simulator does not need)."""
    return (value if isinstance(value, Decimal) else Decimal(str(value))).quantize(CENT)


def cents(value: Decimal) -> int:
    """A money amount in whole cents (what the simulators index and compare)."""
    return int(value * 100)


def sim_pragmas(db: sqlite3.Connection) -> None:
    """A simulator's state needs no durability: WAL without fsync makes a call's insert and
    commit ~30 us instead of ~1.5 ms on disk (Balance All at scale: 1,600 calls/s)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
