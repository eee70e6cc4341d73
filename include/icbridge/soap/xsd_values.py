"""XML Schema values as .NET services write them, to Python: ``CONVERTERS`` by xs type name
(decimal, int/long, boolean, date, dateTime with 7 fraction digits, base64Binary, string).
Each raises ValueError on a text that is not its lexical form (the contract reports it as an
answer that cannot be judged, never a zero or a default)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["CONVERTERS"]

_FRACTION = re.compile(r"(\.\d{6})\d+")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(text)


_XSD_INTEGER = re.compile(r"[+-]?[0-9]+")
_XSD_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""xs:integer / xs:decimal lexical forms: ASCII digits only (Python's int() and Decimal() also
take other scripts' digits, ``_`` and exponents, which no .NET service writes)."""


def _decimal(text: str) -> Decimal:
    text = text.strip()
    if not _XSD_DECIMAL.fullmatch(text):
        raise ValueError(text)
    return Decimal(text)


def _integer(text: str) -> int:
    text = text.strip()
    if not _XSD_INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _date(text: str) -> date:
    return date.fromisoformat(text.strip()[:10])  # a .NET DateTime where xs:date is declared: its date


def _datetime(text: str) -> datetime:
    text = _FRACTION.sub(r"\1", text.strip())  # .NET writes 7 fraction digits
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _base64(text: str) -> bytes:
    return base64.b64decode(text)


def _string(text: str) -> str:
    return text


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "decimal": _decimal,
    "int": _integer,
    "long": _integer,
    "boolean": _boolean,
    "date": _date,
    "dateTime": _datetime,
    "base64Binary": _base64,
    "string": _string,
}
