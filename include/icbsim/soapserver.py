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
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

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
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
CONTENT_TYPES = {SOAP11: "text/xml; charset=utf-8", SOAP12: "application/soap+xml; charset=utf-8"}


class _Nil:
    def __repr__(self) -> str:
        return "NIL"


NIL: Any = _Nil()
"""Handler value that writes ``xsi:nil="true"`` (a null Nullable<T> in .NET)."""


class SoapFault(Exception):
    """Raised by a handler to answer a SOAP fault. code: "Client" (caller's fault) or "Server"."""

    def __init__(self, message: str, code: str = "Client") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class HttpError(Exception):
    """Raised by a handler to answer a bare HTTP error (no SOAP body), e.g. an IIS 500 page."""

    def __init__(self, status: int = 500, text: str = "Internal Server Error") -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class DropConnection(Exception):  # noqa: N818 - an instruction to the server, not an error
    """Raised by a handler to close the client's socket without any answer (fault injection)."""


def safe_parser() -> etree.XMLParser:
    """lxml parser for untrusted XML: no entities, no DTD loading, no network. Huge text nodes
    are allowed (a BIF part or a bill PDF is one base64 node over libxml2's 10 MB default) —
    only because entities, DTDs and network are off; requests stay within max_request_bytes."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
        remove_comments=True,
        remove_pis=True,
    )


_parsers = threading.local()


def _thread_parser() -> etree.XMLParser:
    """This thread's :func:`safe_parser` (an lxml parser is not shared between threads; making
    one per request cost more than parsing the request)."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = safe_parser()
    return parser


@dataclass
class SoapService:
    """One .asmx endpoint: its path, WSDL and handlers by operation name."""

    path: str
    namespace: str
    wsdl: etree._ElementTree
    handlers: dict[str, Handler]
    operations: frozenset[str] = field(default_factory=frozenset)


def _text(value: Any) -> str:
    """Python value -> xsd lexical form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escaped(text: str) -> str:
    if _NOT_XML.search(text):  # as lxml refuses them
        raise ValueError("All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters")
    return escape(text)


def _render(out: list[str], name: str, value: Any) -> None:
    """Append ``<name>value</name>`` (unprefixed: the Response element declares the default
    namespace). Written as text, not lxml nodes: ~5x cheaper, and the answers are small."""
    if value is None:
        return
    if value is NIL:
        out.append(f'<{name} xsi:nil="true" />')
    elif isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, sub in value.items():
            _render(out, key, sub)
        out.append(f"</{name}>")
    elif isinstance(value, list | tuple):
        out.append(f"<{name}>")
        for item in value:
            if not isinstance(item, Mapping) or len(item) != 1:
                raise TypeError(f"{name}: list items must be one-key dicts {{'Item': value}}, got {item!r}")
            ((tag, sub),) = item.items()
            _render(out, tag, sub)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_escaped(_text(value))}</{name}>")


def _to_python(element: etree._Element) -> dict[str, Any]:
    """Request element -> dict of strings (see the module docstring)."""
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if child.get(f"{{{XSI}}}nil") in ("true", "1"):
            value: Any = None
        elif len(child):
            value = _to_python(child)
        else:
            value = child.text or ""
        if name in out:  # a repeated element: values are never lists otherwise
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


class _ThreadingHttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One thread per connection; connections are kept alive (HTTP/1.1), so a client with a
    pool of N connections costs N threads, not a thread and a TCP handshake per call."""

    daemon_threads = True  # a handler still sleeping at stop() must not block shutdown
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WsgiApp, max_request_bytes: int, reuse_port: bool) -> None:
        self.allow_reuse_port = reuse_port
        super().__init__(address, _KeepAliveHandler)
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Shut every open keep-alive connection: a stopped server must not answer anymore."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_MAX_LINE = 65536
_MAX_HEADERS = 100


class _KeepAliveHandler(socketserver.StreamRequestHandler):
    """A small HTTP/1.1 server side for WSGI apps that return their whole body (ours do).

    Why not wsgiref: it speaks HTTP/1.0 and closes after every answer, so each SOAP call paid
    a TCP connect and a new thread, and ``http.client``'s header parsing (email.parser) is the
    dearest part of a small request. Here a request line and headers are parsed by hand, the
    body is read by Content-Length (a chunked or length-less request is answered, then the
    connection closed), and the connection stays open unless the client asks otherwise.
    """

    timeout = 60  # a stalled or idle client does not hold a thread forever
    rbufsize = 65536
    server: _ThreadingHttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # timeouts, resets, a socket shut by stop()
            while self._one_request():
                pass

    def _one_request(self) -> bool:
        """Serve one request; False when the connection is to be closed."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._send("400 Bad Request", [("Content-Type", "text/plain")], [b"bad request line"], close=True)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            self._send("431 Request Header Fields Too Large", [], [b""], close=True)
            return False
        connection = headers.get("connection", "").lower()
        close = "close" in connection if version == "HTTP/1.1" else "keep-alive" not in connection
        body = b""
        length_text = headers.get("content-length")
        if "transfer-encoding" in headers:
            close = True  # not supported: answered (411 below for a POST), then the connection closed
            length_text = None
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError:
                self._send("400 Bad Request", [("Content-Type", "text/plain")], [b"bad Content-Length"], close=True)
                return False
            if length > self.server.max_request_bytes:
                self._send("413 Payload Too Large", [("Content-Type", "text/plain")], [b"request too large"], True)
                return False
            body = self.rfile.read(length)
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "CONTENT_LENGTH": length_text or "",
            "CONTENT_TYPE": headers.get("content-type", ""),
            "SERVER_PROTOCOL": version,
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "icbridge.socket": self.connection,  # for DropConnection
        }
        for name, value in headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status_headers: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            status_headers[:] = [status, response_headers]

        try:
            chunks = self.server.app(environ, start_response)
        except ConnectionAbortedError:  # DropConnection: the socket is already shut
            return False
        except Exception:
            log.exception("soapserver: the app failed")
            self._send("500 Internal Server Error", [("Content-Type", "text/plain")], [b"server error"], close=True)
            return False
        self._send(status_headers[0], status_headers[1], chunks, close)
        return not close

    def _send(self, status: str, headers: list[tuple[str, str]], chunks: Iterable[bytes], close: bool) -> None:
        body = b"".join(chunks)
        head = [f"HTTP/1.1 {status}"]
        head += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
        head.append(f"Content-Length: {len(body)}")
        if close:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        log.debug("soapserver: %s %s", status, len(body))


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
        self._httpd: _ThreadingHttpServer | None = None
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
        httpd = _ThreadingHttpServer((self.host, self.port), self._app, self.max_request_bytes, self.reuse_port)
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
                root = etree.fromstring(data, _thread_parser())
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
                result = handler(_to_python(request))
            except (SoapFault, HttpError, DropConnection):
                raise
            except Exception as exc:
                log.exception("soapserver: handler %s failed", req_q.localname)
                raise SoapFault(f"Server was unable to process request. ---> {exc}", "Server") from exc
            return "200 OK", soap_ns, _envelope(soap_ns, service.namespace, req_q.localname, result)
        except SoapFault as fault:
            return "500 Internal Server Error", soap_ns, _fault(soap_ns, fault)


def _norm(path: str) -> str:
    return "/" + path.strip("/")


def _key(path: str) -> str:
    """Lookup key: IIS paths are case-insensitive."""
    return _norm(path).lower()


def _plain(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]


def _envelope_root(soap_ns: str) -> tuple[etree._Element, etree._Element]:
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns, "xsi": XSI, "xsd": XSD})
    return env, etree.SubElement(env, f"{{{soap_ns}}}Body")


def _envelope(soap_ns: str, ns: str, operation: str, result: Mapping[str, Any] | None) -> bytes:
    out = [
        "<?xml version='1.0' encoding='utf-8'?>\n",
        f'<soap:Envelope xmlns:soap="{soap_ns}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"><soap:Body>',
        f'<{operation}Response xmlns={quoteattr(ns)}>',
    ]
    if result is not None:
        _render(out, f"{operation}Result", dict(result))
    out.append(f"</{operation}Response></soap:Body></soap:Envelope>")
    return "".join(out).encode("utf-8")


def _fault(soap_ns: str, fault: SoapFault) -> bytes:
    env, body = _envelope_root(soap_ns)
    node = etree.SubElement(body, f"{{{soap_ns}}}Fault")
    if soap_ns == SOAP11:
        etree.SubElement(node, "faultcode").text = f"soap:{'Server' if fault.code == 'Server' else 'Client'}"
        etree.SubElement(node, "faultstring").text = fault.message
        etree.SubElement(node, "detail")
    else:
        code = etree.SubElement(node, f"{{{soap_ns}}}Code")
        value = "soap:Receiver" if fault.code == "Server" else "soap:Sender"
        etree.SubElement(code, f"{{{soap_ns}}}Value").text = value
        reason = etree.SubElement(node, f"{{{soap_ns}}}Reason")
        text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.message
        etree.SubElement(node, f"{{{soap_ns}}}Detail")
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")
