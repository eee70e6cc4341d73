"""What the two Harris CIS clients (inHance, AUS) share: endpoints, the result shape, the fault.

Why one shape: operators and flows judge every CIS answer the same way (``result.ok``,
``result.message``, ``result.not_found``) whichever vendor answered, and the rule "a
business refusal is a value, a SOAP fault is an exception, a transport problem is a
``requests`` exception" holds for both. No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import zeep.exceptions

from icbridge.soap.client import BoundClient, make_client, soap_text

__all__ = [
    "CisClient",
    "DEFAULT",
    "CisEndpoint",
    "CisError",
    "CisFault",
    "CisHttpError",
    "CisResult",
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


class CisClient:
    """What the inHance and AUS clients share: per-method endpoints and keys, the hardened zeep
    client per endpoint, credentials kept out of repr and pickles, faults turned into CisError.

    Subclasses set SERVICE ("inhance" | "aus"), LABEL, WSDL, METHODS and FALLBACKS.
    """

    SERVICE: str
    LABEL: str
    WSDL: Path
    METHODS: tuple[str, ...]
    FALLBACKS: Mapping[str, str] = {}

    def __init__(
        self,
        endpoints: Mapping[str, CisEndpoint],
        *,
        timeout: float = 30,
        ca_file: str | None = None,
        verify: bool = True,
        pool_maxsize: int = 10,
    ) -> None:
        self._endpoints = resolve_endpoints(endpoints, self.METHODS, self.FALLBACKS)
        if not self._endpoints:
            raise ValueError(f"no {self.LABEL} endpoint given (need {DEFAULT!r} or one per method)")
        self.timeout = timeout
        self._options = {"timeout": timeout, "ca_file": ca_file, "verify": verify, "pool_maxsize": pool_maxsize}

    @classmethod
    def single(cls, url: str, key: str, **options: Any) -> Any:
        """All methods at one URL with one key (a test URL, or a simple biller)."""
        return cls({DEFAULT: CisEndpoint(url, key)}, **options)

    def __repr__(self) -> str:
        urls = sorted({e.url for e in self._endpoints.values()})
        return f"{type(self).__name__}(urls={urls!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds credentials and cannot be pickled")

    def endpoint_url(self, method: str) -> str:
        """The URL ``method`` posts to (for logs and tests; the key is never exposed)."""
        return self._endpoint(method).url

    def _endpoint(self, method: str) -> CisEndpoint:
        try:
            return self._endpoints[method]
        except KeyError:
            if method not in self.METHODS:
                raise ValueError(f"unknown {self.LABEL} method {method!r}") from None
            raise ValueError(f"no endpoint configured for {self.LABEL} {method} (and no default)") from None

    def soap_client(self, method: str) -> BoundClient:
        """The (cached) hardened zeep client bound to ``method``'s endpoint."""
        return make_client(self.WSDL, self._endpoint(method).url, **self._options)

    def _call(self, method: str, key_field: str = "WebServiceKey", **params: Any) -> Any:
        endpoint = self._endpoint(method)
        client = make_client(self.WSDL, endpoint.url, **self._options)
        try:
            return getattr(client.service, method)(**params, **{key_field: endpoint.key})
        except zeep.exceptions.Fault as fault:
            raise CisFault(self.SERVICE, method, soap_text(fault.message), fault.code) from None
        except zeep.exceptions.TransportError as error:
            raise CisHttpError(self.SERVICE, method, error.status_code, error.content) from None


class LeanCisMethod:
    """One CIS read method over :class:`icbridge.soap.lean.LeanOperation` (the bulk path of
    Balance All): the same results and errors as the zeep client's method, a fraction of
    the CPU. Subclasses name the WSDL, service and method. Holds the web-service key: it is
    not in the repr, and the object cannot be pickled."""

    wsdl: Path
    service: str
    method: str

    def __init__(self, endpoint: CisEndpoint, **options: Any) -> None:
        from icbridge.soap.lean import LeanOperation

        self._operation = LeanOperation(
            self.wsdl, self.method, endpoint.url, {"WebServiceKey": endpoint.key}, service=self.service, **options
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._operation!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds credentials and cannot be pickled")
