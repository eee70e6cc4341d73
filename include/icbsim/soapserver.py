"""A small reusable SOAP 1.1/1.2 server for the simulators (IC now; inHance and AUS later).

Why not spyne: it does not import on Python 3.12+ and emits its own WSDL rather than the
ASMX contract. Here the hand-written WSDLs are served as they are (only the soap:address
rewritten to this server), requests are parsed with lxml with entities, DTDs and the network
off, and each operation is a plain Python handler ``dict -> dict``. Answers have the ASMX
shape ``<MethodResponse><MethodResult>…`` and errors are SOAP faults, so zeep sees what it
would see from IIS.

Handlers receive the request element's children as a dict of strings (nested elements as
dicts, repeated ones as lists, ``xsi:nil`` as None, absent elements missing) and return the
content of ``<MethodResult>`` as a dict, in the WSDL's sequence order (zeep is strict):
None values are left out (a null reference in .NET), :data:`NIL` writes ``xsi:nil``, lists
hold one-key dicts ``{"Item": {...}}`` (an ASMX ArrayOfItem). Returning None leaves
``<MethodResult>`` out. Raise :class:`SoapFault` for a deliberate fault.

The XML in and out is :mod:`icbsim.envelopes`', the HTTP/1.1 server :mod:`icbsim.http_server`'s;
here: the services, their WSDLs and the dispatch of a request to its handler.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from lxml import etree

from icbsim.envelopes import (
    CONTENT_TYPES,
    NIL,
    SOAP11,
    SOAP12,
    WSDL,
    WSDL_SOAP11,
    WSDL_SOAP12,
    SoapFault,
    answer_envelope,
    fault_envelope,
    request_args,
    safe_parser,
    thread_parser,
)
from icbsim.http_server import ThreadingHttpServer, WsgiApp

__all__ = [
    "NIL",
    "DropConnection",
    "Handler",
    "HttpError",
    "SoapFault",
    "SoapServer",
    "SoapService",
    "WsgiApp",
    "safe_parser",
]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Mapping[str, Any] | None]


class HttpError(Exception):
    """Raised by a handler to answer a bare HTTP error (no SOAP body), e.g. an IIS 500 page."""

    def __init__(self, status: int = 500, text: str = "Internal Server Error") -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class DropConnection(Exception):  # noqa: N818 - an instruction to the server, not an error
    """Raised by a handler to close the client's socket without any answer (fault injection)."""


@dataclass
class SoapService:
    """One .asmx endpoint: its path, WSDL and handlers by operation name."""

    path: str
    namespace: str
    wsdl: etree._ElementTree
    handlers: dict[str, Handler]
    operations: frozenset[str] = field(default_factory=frozenset)


class SoapServer:
    """Threaded HTTP/1.1 (keep-alive) server on 127.0.0.1 (port 0 = any free port) hosting SOAP services."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, max_request_bytes: int = 64 << 20, reuse_port: bool = False
    ) -> None:
        """``reuse_port``: SO_REUSEPORT, so several processes can serve one port (the kernel spreads
        the connections; benchmarks use it to give a simulator more than one GIL)."""
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.max_request_bytes = max_request_bytes
        self.services: dict[str, SoapService] = {}
        self.mounts: dict[str, WsgiApp] = {}
        self.calls: list[tuple[str, str]] = []  # (path, operation), for tests
        self._lock = threading.Lock()
        self._httpd: ThreadingHttpServer | None = None
        self._thread: threading.Thread | None = None

    # registration ---------------------------------------------------------------------------

    def add_service(self, path: str, wsdl: Path | bytes, handlers: Mapping[str, Handler]) -> SoapService:
        """Serve ``wsdl`` at ``path`` (``GET path?WSDL``) and its operations by ``handlers``."""
        data = wsdl if isinstance(wsdl, bytes) else Path(wsdl).read_bytes()
        tree = etree.ElementTree(etree.fromstring(data, safe_parser()))
        root = tree.getroot()
        namespace = root.get("targetNamespace") or ""
        operations = frozenset(op.get("name") for op in root.iterfind(f"{{{WSDL}}}portType/{{{WSDL}}}operation"))
        unknown = set(handlers) - operations
        if unknown:
            raise ValueError(f"handlers for operations not in the WSDL: {sorted(unknown)}")
        service = SoapService(_norm(path), namespace, tree, dict(handlers), operations)
        self.services[_key(path)] = service
        return service

    def mount(self, path: str, app: WsgiApp) -> None:
        """Serve a raw WSGI app at exactly ``path`` (tests: hostile or slow responses)."""
        self.mounts[_key(path)] = app

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> SoapServer:
        if self._httpd is not None:
            return self
        httpd = ThreadingHttpServer((self.host, self.port), self._app, self.max_request_bytes, self.reuse_port)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name=f"soapserver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SoapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("SoapServer is not started")
        return f"http://{self.host}:{self.port}"

    def service_url(self, path: str) -> str:
        return self.url + _norm(path)

    # WSGI -----------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = _key(environ.get("PATH_INFO") or "/")
        mounted = self.mounts.get(path)
        if mounted is not None:
            return mounted(environ, start_response)
        service = self.services.get(path)
        if service is None:
            return _plain(start_response, "404 Not Found", "not found")
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            if environ.get("QUERY_STRING", "").lower() == "wsdl":
                body = self._wsdl_for(service)
                start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
                return [body]
            return _plain(start_response, "404 Not Found", "use ?WSDL")
        if method != "POST":
            return _plain(start_response, "405 Method Not Allowed", "POST or GET ?WSDL")
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return _plain(start_response, "411 Length Required", "Content-Length required")
        if length > self.max_request_bytes:
            return _plain(start_response, "413 Payload Too Large", "request too large")
        try:
            status, soap_ns, body = self._dispatch(service, environ["wsgi.input"].read(length))
        except HttpError as error:
            return _plain(start_response, f"{error.status} {HTTPStatus(error.status).phrase}", error.text)
        except DropConnection:
            sock = environ.get("icbridge.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError("dropped on purpose") from None  # the handler ends the connection
        start_response(status, [("Content-Type", CONTENT_TYPES[soap_ns])])
        return [body]

    def _wsdl_for(self, service: SoapService) -> bytes:
        tree = copy.deepcopy(service.wsdl)
        location = self.service_url(service.path)
        for ns in (WSDL_SOAP11, WSDL_SOAP12):
            for address in tree.iterfind(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{ns}}}address"):
                address.set("location", location)
        return etree.tostring(tree, xml_declaration=True, encoding="utf-8")

    def _dispatch(self, service: SoapService, data: bytes) -> tuple[str, str, bytes]:
        soap_ns = SOAP11
        try:
            try:
                root = etree.fromstring(data, thread_parser())
            except etree.XMLSyntaxError as exc:
                raise SoapFault(f"Invalid XML in the request: {exc}") from None
            if root.getroottree().docinfo.doctype:
                raise SoapFault("DTD is prohibited in SOAP messages")
            qname = etree.QName(root)
            if qname.namespace in (SOAP11, SOAP12):
                soap_ns = qname.namespace
            if qname.localname != "Envelope" or qname.namespace not in (SOAP11, SOAP12):
                raise SoapFault("The request is not a SOAP 1.1 or 1.2 Envelope")
            body = root.find(f"{{{soap_ns}}}Body")
            request = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
            if request is None:
                raise SoapFault("The SOAP Body is empty")
            req_q = etree.QName(request)
            handler = service.handlers.get(req_q.localname) if req_q.namespace == service.namespace else None
            if handler is None:
                raise SoapFault(f"Server did not recognize the request element {{{req_q.namespace}}}{req_q.localname}")
            with self._lock:
                self.calls.append((service.path, req_q.localname))
            try:
                result = handler(request_args(request))
            except (SoapFault, HttpError, DropConnection):
                raise
            except Exception as exc:
                log.exception("soapserver: handler %s failed", req_q.localname)
                raise SoapFault(f"Server was unable to process request. ---> {exc}", "Server") from exc
            return "200 OK", soap_ns, answer_envelope(soap_ns, service.namespace, req_q.localname, result)
        except SoapFault as fault:
            return "500 Internal Server Error", soap_ns, fault_envelope(soap_ns, fault)


def _norm(path: str) -> str:
    return "/" + path.strip("/")


def _key(path: str) -> str:
    """Lookup key: IIS paths are case-insensitive."""
    return _norm(path).lower()


def _plain(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]
