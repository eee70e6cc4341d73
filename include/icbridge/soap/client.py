"""One hardened zeep client factory for every SOAP service icbridge calls (IC, inHance, AUS).

Why one factory: zeep's defaults are unsafe or unhelpful here (no operation timeout, DTDs
allowed, external imports fetched, the WSDL's own address used), and these machines export
REQUESTS_CA_BUNDLE, which silently overrides ``session.verify``. Every caller gets the same
fixes by going through :func:`make_client`. No Airflow imports: the hooks wrap this.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import requests
import zeep
from requests.adapters import HTTPAdapter
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.wsdl import Document
from zeep.wsdl.bindings.soap import Soap11Binding

__all__ = ["BoundClient", "clear_caches", "make_client", "redact_soap", "soap_text"]

_SECRET_ELEMENTS = re.compile(
    r"<(?P<tag>(?:[\w.-]+:)?(?:\w*Key|\w*Password|BillerGUID|BillerGuid))(?P<attrs>[^>]*)>"
    r"[^<]*</(?P=tag)>",
    re.IGNORECASE,
)


def redact_soap(text: str) -> str:
    """Blank out credential elements (…Key, …Password, BillerGUID) in a SOAP message.

    zeep logs whole envelopes at DEBUG, and every request here carries credentials in the body.
    """
    return _SECRET_ELEMENTS.sub(r"<\g<tag>\g<attrs>>***</\g<tag>>", text)


class _RedactCredentials(logging.Filter):
    """Logging filter for zeep's transport logger: the envelopes it logs hold credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix; let logging report it
            return True
        if isinstance(message, str) and "<" in message:
            record.msg = redact_soap(message)
            record.args = ()
        return True


_transport_logger = logging.getLogger("zeep.transports")
if not any(isinstance(f, _RedactCredentials) for f in _transport_logger.filters):
    _transport_logger.addFilter(_RedactCredentials())


def soap_text(value: Any) -> str:
    """Text of a SOAP string field; zeep returns None for ``<X/>`` and for an absent X alike."""
    return "" if value is None else str(value)


def _settings(strict: bool) -> zeep.Settings:
    """Hardened zeep settings: no DTDs, no entities, no external fetches, no huge trees."""
    return zeep.Settings(
        strict=strict,  # strict also keeps lxml out of "recover" mode for malformed XML
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
    )


def _session(*, ca_file: str | None, verify: bool, pool_maxsize: int) -> requests.Session:
    """A requests session that ignores the environment (REQUESTS_CA_BUNDLE, proxies, netrc)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_file or verify
    adapter = HTTPAdapter(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https", "file")


_document_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _load_document(location: str, strict: bool, ca_file: str | None, verify: bool, timeout: float) -> Document:
    """Parse a WSDL once per process; the parsed Document is read-only and shared by clients."""
    transport = Transport(
        session=_session(ca_file=ca_file, verify=verify, pool_maxsize=1),
        timeout=timeout,
        operation_timeout=timeout,
    )
    return Document(location, cast(Any, transport), settings=_settings(strict))  # zeep annotates a class


def _document(location: str, *, strict: bool, ca_file: str | None, verify: bool, timeout: float) -> Document:
    # TLS options only matter when the WSDL itself is fetched over the network.
    remote = _is_url(location)
    with _document_lock:
        return _load_document(
            location,
            strict,
            ca_file if remote else None,
            verify if remote else True,
            timeout if remote else 60.0,
        )


class BoundClient(zeep.Client):
    """A zeep Client whose ``service`` is bound to an endpoint we chose, never the WSDL's address."""

    def __init__(self, wsdl: Document, *, endpoint: str, binding: str | None, **kwargs: Any) -> None:
        super().__init__(wsdl, **kwargs)
        self.endpoint = endpoint
        self.binding_name = self._binding_qname(binding)
        self._bound_service: ServiceProxy = self.create_service(self.binding_name, endpoint)

    @property
    def service(self) -> ServiceProxy:
        """The service proxy bound to ``endpoint``."""
        return self._bound_service

    def _binding_qname(self, binding: str | None) -> str:
        """Resolve a binding given as a QName text, a local name, or None (the first SOAP 1.1 one)."""
        bindings = self.wsdl.bindings
        if binding is None:
            for qname, candidate in bindings.items():
                if isinstance(candidate, Soap11Binding):
                    return str(qname)
            raise ValueError(f"no SOAP 1.1 binding in {self.wsdl.location}")
        for qname in bindings:
            text = str(qname)
            if binding in (text, text.rpartition("}")[2]):
                return text
        raise ValueError(f"no binding {binding!r}; have {', '.join(str(q) for q in bindings)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(wsdl={self.wsdl.location!r}, endpoint={self.endpoint!r})"


@functools.lru_cache(maxsize=256)
def _cached_client(
    location: str,
    endpoint: str,
    timeout: float,
    ca_file: str | None,
    verify: bool,
    pool_maxsize: int,
    strict: bool,
    binding: str | None,
) -> BoundClient:
    document = _document(location, strict=strict, ca_file=ca_file, verify=verify, timeout=timeout)
    session = _session(ca_file=ca_file, verify=verify, pool_maxsize=pool_maxsize)
    transport = Transport(session=session, timeout=timeout, operation_timeout=timeout)
    return BoundClient(document, endpoint=endpoint, binding=binding, transport=transport, settings=_settings(strict))


def make_client(
    wsdl: str | Path,
    endpoint: str,
    *,
    timeout: float = 60,
    ca_file: str | None = None,
    verify: bool = True,
    pool_maxsize: int = 10,
    strict: bool = True,
    binding: str | None = None,
) -> BoundClient:
    """A hardened zeep client for ``wsdl`` whose ``.service`` posts to ``endpoint``.

    ``timeout`` bounds both WSDL loading and every operation (zeep has no operation timeout by
    default). ``ca_file`` wins over ``verify``. ``binding`` picks a WSDL binding by QName or
    local name (e.g. ``"CloudInvoicingSoap12"``); default is the first SOAP 1.1 binding.
    Clients are cached per arguments and the WSDL is parsed once per process, so calling this
    per task or per call is cheap; a cached client (and its connection pool) is shared by
    threads, so size ``pool_maxsize`` to the threads that use it.
    """
    location = str(wsdl) if _is_url(str(wsdl)) else str(Path(wsdl).expanduser().resolve())
    return _cached_client(
        location, endpoint, float(timeout), ca_file, bool(verify), int(pool_maxsize), bool(strict), binding
    )


def clear_caches() -> None:
    """Forget cached clients and parsed WSDLs (tests, or after a WSDL file changed on disk)."""
    _cached_client.cache_clear()
    _load_document.cache_clear()
