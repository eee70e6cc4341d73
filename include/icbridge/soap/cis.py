"""What the two Harris CIS clients (inHance, AUS) share: endpoints, the result shape, the fault.

Why one shape: operators and flows judge every CIS answer the same way (``result.ok``,
``result.message``, ``result.not_found``) whichever vendor answered, and the rule "a
business refusal is a value, a SOAP fault is an exception, a transport problem is a
``requests`` exception" holds for both. No Airflow imports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.errors import SoapError
from icbridge.soap.client import BoundClient, make_client
from icbridge.soap.contract import Record
from icbridge.soap.errors import HttpStatusError, is_credentials_refusal
from icbridge.soap.operation import SoapOperation
from icbridge.soap.transport import DEFAULT_MAX_ANSWER_BYTES, HttpTransport

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


class CisError(SoapError):
    """Base of the errors a CIS call raises besides ``requests`` exceptions."""


class CisFault(CisError):
    """The CIS answered a SOAP fault (1.1 or 1.2; its reason text kept). Never carries credentials."""

    def __init__(self, service: str, operation: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{service} {operation}: {message}")
        self.service = service
        self.operation = operation
        self.message = message
        self.code = code


CisHttpError = HttpStatusError
"""The CIS answered an HTTP error without a SOAP body (an IIS error page) or a redirect."""


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

    @property
    def credentials_refused(self) -> bool:
        """The CIS refused the web-service key: nothing was applied (inHance: by its message)."""
        return not self.ok and is_credentials_refusal(self.message)


def money(value: Decimal | int | str | float) -> Decimal:
    """Money as Decimal; a float goes through str() so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


class CisClient:
    """What the inHance and AUS clients share: per-method endpoints and keys, one
    :class:`~icbridge.soap.operation.SoapOperation` per method (one call path, one answer
    contract), one connection pool per endpoint URL, credentials kept out of repr and pickles,
    SOAP faults raised as :class:`CisFault`.

    Subclasses set SERVICE ("inhance" | "aus"), LABEL, WSDL, METHODS, FALLBACKS and HUGE (the
    methods whose answers may carry text nodes over 10 MB, e.g. bill PDFs).
    """

    SERVICE: str
    LABEL: str
    WSDL: Path
    METHODS: tuple[str, ...]
    FALLBACKS: Mapping[str, str] = {}
    HUGE: frozenset[str] = frozenset()

    def __init__(
        self,
        endpoints: Mapping[str, CisEndpoint],
        *,
        timeout: float = 30,
        ca_file: str | None = None,
        verify: bool = True,
        pool_maxsize: int = 10,
        proxy: str | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._endpoints = resolve_endpoints(endpoints, self.METHODS, self.FALLBACKS)
        if not self._endpoints:
            raise ValueError(f"no {self.LABEL} endpoint given (need {DEFAULT!r} or one per method)")
        self.timeout = timeout
        self._options: dict[str, Any] = {"timeout": timeout, "ca_file": ca_file, "verify": verify,
                                         "pool_maxsize": pool_maxsize}
        self._transport_options: dict[str, Any] = {**self._options, "proxy": proxy,
                                                   "max_answer_bytes": max_answer_bytes}
        self._transports: dict[str, HttpTransport] = {}
        self._operations: dict[tuple[str, bool], SoapOperation] = {}
        self._lock = threading.Lock()

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
        """The (cached) zeep client of ``method``'s WSDL (renders requests; never sends)."""
        return make_client(self.WSDL, self._endpoint(method).url, **self._options)

    def operation(self, method: str, key_field: str = "WebServiceKey", *, template: bool = False) -> SoapOperation:
        """The (cached) call path of ``method``; ``template`` renders requests from a template
        (the bulk read path of Balance All)."""
        endpoint = self._endpoint(method)
        with self._lock:
            cached = self._operations.get((method, template))
            if cached is None:
                transport = self._transports.get(endpoint.url)
                if transport is None:
                    transport = self._transports[endpoint.url] = HttpTransport(endpoint.url, **self._transport_options)
                service = self.SERVICE
                cached = self._operations[(method, template)] = SoapOperation(
                    self.soap_client(method), method, transport, {key_field: endpoint.key}, service=service,
                    on_fault=lambda message, code: CisFault(service, method, message, code),
                    template=template, huge=method in self.HUGE,
                )
        return cached

    def _call(self, method: str, key_field: str = "WebServiceKey", **params: Any) -> Record | None:
        return self.operation(method, key_field).call(**params)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            for transport in self._transports.values():
                transport.close()


class LeanCisMethod:
    """One CIS read method rendered from a template (the bulk path of Balance All): the same
    answer path, results and errors as the client's method, less CPU per call. Subclasses
    name the method."""

    method: str
    key_field = "WebServiceKey"

    def __init__(self, client: CisClient) -> None:
        self._client = client
        self._operation = client.operation(self.method, self.key_field, template=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._operation!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds credentials and cannot be pickled")

    def close(self) -> None:
        self._client.close()
