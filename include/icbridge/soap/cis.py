"""What the two Harris CIS clients (inHance, AUS) share: endpoints, the result shape, the fault.

Why one shape: operators and flows judge every CIS answer the same way (``result.ok``,
``result.message``, ``result.not_found``) whichever vendor answered, and the rule "a
business refusal is a value, a SOAP fault is an exception, a transport problem is a
``requests`` exception" holds for both. No Airflow imports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "DEFAULT",
    "CisEndpoint",
    "CisError",
    "CisFault",
    "CisHttpError",
    "CisResult",
    "RateLimiter",
    "money",
    "resolve_endpoints",
]

DEFAULT = "default"
"""Key of the endpoint used by every method that has none of its own."""


class CisError(RuntimeError):
    """Base of the errors a CIS call raises besides ``requests`` exceptions."""


class CisFault(CisError):
    """The CIS answered a SOAP fault. Never carries credentials."""

    def __init__(self, service: str, operation: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{service} {operation}: {message}")
        self.service = service
        self.operation = operation
        self.message = message
        self.code = code


class CisHttpError(CisError):
    """The CIS answered an HTTP error without a SOAP body (e.g. an IIS 500 page)."""

    def __init__(self, service: str, operation: str, status_code: int, body: bytes | None) -> None:
        text = (body or b"")[:200].decode("utf-8", "replace")
        super().__init__(f"{service} {operation}: HTTP {status_code}: {text}")
        self.service = service
        self.operation = operation
        self.status_code = status_code


@dataclass(frozen=True)
class CisEndpoint:
    """One URL and its web-service key/password. The key is left out of repr and never logged."""

    url: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.url or not self.key:
            raise ValueError("a CIS endpoint needs both a URL and a key")

    def __reduce__(self) -> Any:
        raise TypeError("CisEndpoint holds a credential and cannot be pickled")


def resolve_endpoints(
    endpoints: Mapping[str, CisEndpoint], methods: tuple[str, ...], fallbacks: Mapping[str, str] | None = None
) -> dict[str, CisEndpoint]:
    """method -> endpoint: its own, else its fallback method's (e.g. SetEmail -> SetPaperless), else DEFAULT.

    Unknown keys are errors (a typo must not silently send a payment to the default URL).
    A method left without any endpoint is simply absent; calling it raises ValueError.
    """
    unknown = sorted(set(endpoints) - set(methods) - {DEFAULT})
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(methods)} and {DEFAULT!r}")
    fallbacks = fallbacks or {}
    resolved: dict[str, CisEndpoint] = {}
    for method in methods:
        chosen = endpoints.get(method)
        if chosen is None and method in fallbacks:
            chosen = endpoints.get(fallbacks[method])
        if chosen is None:
            chosen = endpoints.get(DEFAULT)
        if chosen is not None:
            resolved[method] = chosen
    return resolved


@dataclass(frozen=True)
class CisResult:
    """Common part of every CIS answer: did the CIS accept it, and its message ("" when none).

    ``ok`` False is a business answer (account unknown, bad key, refused value), not an error
    of the call: the caller decides (RTDR records and goes on, rule 3).
    """

    ok: bool
    message: str

    @property
    def not_found(self) -> bool:
        """The CIS does not know the account (or bill). Vendor-specific; see docs/cis-services.md."""
        return not self.ok and "not found" in self.message.lower()


def money(value: Decimal | int | str | float) -> Decimal:
    """Money as Decimal; a float goes through str() so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def decimal_or_zero(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value)


class RateLimiter:
    """At most ``calls_per_second`` acquisitions per second across threads (evenly spaced).

    One per biller and CIS, shared by the threads calling it, so N calls in flight never
    exceed the biller's agreed rate.
    """

    def __init__(self, calls_per_second: float) -> None:
        if calls_per_second <= 0:
            raise ValueError("calls_per_second must be > 0")
        self.interval = 1.0 / calls_per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)
