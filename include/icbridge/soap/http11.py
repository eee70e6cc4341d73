"""A minimal keep-alive HTTP/1.1 POST client for the lean SOAP path (icbridge.soap.lean).

Why not requests/urllib3 here: for a 600-byte SOAP call they spend ~0.3 ms CPU on header
objects and ``email.parser``, more than the rest of the call; at 1,600 calls/s (Balance All,
250,000 accounts) that alone is half a core. This speaks just what a SOAP POST needs:

* one connection per calling thread (thread-local), reused while the server keeps it open;
  a connection the server closed while idle is noticed before reuse (readable = EOF) and
  replaced, like urllib3 does;
* request: request line and headers and body in one ``sendall``;
* response: status line, headers, body by ``Content-Length``, ``chunked``, or until EOF;
  ``Connection: close`` honoured; limits on header and body size;
* TLS: ``ssl.create_default_context`` (``ca_file`` or the system store), hostname checked;
  ``verify=False`` only when asked. Nothing is read from the environment (no proxies, no
  REQUESTS_CA_BUNDLE);
* errors as the ``requests`` exceptions the zeep path raises: ``requests.ConnectTimeout``,
  ``requests.ReadTimeout``, ``requests.exceptions.SSLError``, ``requests.ConnectionError``.
  Nothing is retried here (the caller's retry policy decides).

No Airflow imports.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

import requests

__all__ = ["Http11Endpoint"]

MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 64 << 20


class _Connection:
    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""


class Http11Endpoint:
    """POSTs to one URL over keep-alive connections, one per calling thread."""

    def __init__(self, url: str, *, timeout: float, ca_file: str | None = None, verify: bool = True) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            if not verify and not ca_file:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        host_header = self.host if parts.port is None else f"{self.host}:{parts.port}"
        self._head = f"POST {self.path} HTTP/1.1\r\nHost: {host_header}\r\n"
        self._local = threading.local()
        self._all: set[_Connection] = set()
        self._lock = threading.Lock()

    # connections ----------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError as exc:
            raise requests.ConnectTimeout(f"connect to {self.url} timed out") from exc
        except OSError as exc:
            raise requests.ConnectionError(f"cannot connect to {self.url}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except ssl.SSLError as exc:
                sock.close()
                raise requests.exceptions.SSLError(f"TLS with {self.url}: {exc}") from exc
            except TimeoutError as exc:
                sock.close()
                raise requests.ConnectTimeout(f"TLS handshake with {self.url} timed out") from exc
            except OSError as exc:
                sock.close()
                raise requests.ConnectionError(f"TLS with {self.url}: {exc}") from exc
        connection = _Connection(sock)
        with self._lock:
            self._all.add(connection)
        return connection

    def _drop(self, connection: _Connection) -> None:
        self._local.connection = None
        with self._lock:
            self._all.discard(connection)
        with contextlib.suppress(OSError):
            connection.sock.close()

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            # idle and readable means the server closed it (or sent junk): do not reuse
            try:
                readable = select.select([connection.sock], [], [], 0)[0]
            except (OSError, ValueError):
                readable = [True]
            if readable or connection.buffer:
                self._drop(connection)
                connection = None
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def close(self) -> None:
        """Close every connection (of every thread)."""
        with self._lock:
            connections, self._all = list(self._all), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.close()

    # the call -------------------------------------------------------------------------------

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body``; returns (status, body). Raises ``requests`` exceptions on transport errors."""
        connection = self._connection()
        head = self._head + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        message = (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        try:
            connection.sock.sendall(message)
            status, response_headers = self._read_head(connection)
            data = self._read_body(connection, response_headers)
        except TimeoutError as exc:
            self._drop(connection)
            raise requests.ReadTimeout(f"{self.url}: read timed out ({self.timeout} s)") from exc
        except ssl.SSLError as exc:
            self._drop(connection)
            raise requests.exceptions.SSLError(f"{self.url}: {exc}") from exc
        except (OSError, ValueError) as exc:
            self._drop(connection)
            raise requests.ConnectionError(f"{self.url}: connection aborted: {exc}") from exc
        if response_headers.get("connection", "").lower() == "close":
            self._drop(connection)
        return status, data

    def _recv(self, connection: _Connection) -> bytes:
        chunk = connection.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        return chunk

    def _read_head(self, connection: _Connection) -> tuple[int, dict[str, str]]:
        buffer = connection.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buffer) > MAX_HEADER_BYTES:
                raise ValueError("response headers too large")
            buffer += self._recv(connection)
        head, connection.buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        return int(rest[:3]), headers

    def _read_exactly(self, connection: _Connection, size: int) -> bytes:
        if size > MAX_BODY_BYTES:
            raise ValueError("response body too large")
        buffer = connection.buffer
        while len(buffer) < size:
            buffer += self._recv(connection)
        connection.buffer = buffer[size:]
        return buffer[:size]

    def _read_line(self, connection: _Connection) -> bytes:
        while b"\r\n" not in connection.buffer:
            if len(connection.buffer) > MAX_HEADER_BYTES:
                raise ValueError("chunk header too long")
            connection.buffer += self._recv(connection)
        line, _, connection.buffer = connection.buffer.partition(b"\r\n")
        return line

    def _read_body(self, connection: _Connection, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            total = 0
            while True:
                size = int(self._read_line(connection).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._read_line(connection):  # trailers, up to the empty line
                        pass
                    return b"".join(parts)
                total += size
                parts.append(self._read_exactly(connection, size))
                if total > MAX_BODY_BYTES:
                    raise ValueError("response body too large")
                self._read_exactly(connection, 2)  # CRLF after the chunk
        length = headers.get("content-length")
        if length is not None:
            return self._read_exactly(connection, int(length))
        # neither: the body ends when the server closes the connection
        headers["connection"] = "close"
        parts = [connection.buffer]
        connection.buffer = b""
        total = len(parts[0])
        while True:
            chunk = connection.sock.recv(65536)
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise ValueError("response body too large")
            parts.append(chunk)
