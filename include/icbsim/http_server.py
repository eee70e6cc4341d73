"""A small threaded HTTP/1.1 (keep-alive) server for WSGI apps that return their whole body.

What :class:`~icbsim.soapserver.SoapServer` runs on: one thread per connection, connections
kept alive, the request line and headers parsed by hand (see :class:`KeepAliveHandler`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

__all__ = ["KeepAliveHandler", "ThreadingHttpServer", "WsgiApp"]

log = logging.getLogger("icbsim.soapserver")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ThreadingHttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One thread per connection; connections are kept alive (HTTP/1.1), so a client with a
    pool of N connections costs N threads, not a thread and a TCP handshake per call."""

    daemon_threads = True  # a handler still sleeping at stop() must not block shutdown
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WsgiApp, max_request_bytes: int, reuse_port: bool) -> None:
        self.allow_reuse_port = reuse_port
        super().__init__(address, KeepAliveHandler)
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


class KeepAliveHandler(socketserver.StreamRequestHandler):
    """A small HTTP/1.1 server side for WSGI apps that return their whole body (ours do).

    Why not wsgiref: it speaks HTTP/1.0 and closes after every answer, so each SOAP call paid
    a TCP connect and a new thread, and ``http.client``'s header parsing (email.parser) is the
    dearest part of a small request. Here a request line and headers are parsed by hand, the
    body is read by Content-Length (a chunked or length-less request is answered, then the
    connection closed), and the connection stays open unless the client asks otherwise.
    """

    timeout = 60  # a stalled or idle client does not hold a thread forever
    rbufsize = 65536
    server: ThreadingHttpServer

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
