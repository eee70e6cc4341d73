"""A raw-bytes HTTP server that answers as IIS/ASP.NET (or a proxy in front of it) may.

Not a simulator: it shares none of our SOAP code and knows nothing of the WSDLs. A test
scripts, per path, the exact bytes of each answer (status line, headers, body, how it is cut);
the server reads each request (headers and ``Content-Length`` body, keep-alive) and records
it. Binds 127.0.0.1 on a free port; every connection and the listening socket close on stop.

Script steps (a list, played in order for each request to that path; the last one repeats):

* ``bytes``            — sent as they are (a whole HTTP answer written by the test);
* ``Drop()``           — read the request, then close without a byte of answer;
* ``Cut(raw)``         — send ``raw`` (e.g. headers and half a chunk), then close;
* ``Stall(seconds)``   — read the request, wait, then close (a read timeout for the client);
* ``Continue(raw)``    — send ``HTTP/1.1 100 Continue`` first, then ``raw``;
* ``Interim(head, seconds, raw)`` — send ``head`` (e.g. ``102 Processing``), wait, then ``raw``;
* ``Trickle(raw, every, size)`` — send ``raw`` ``size`` bytes at a time, ``every`` seconds apart.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Continue", "Cut", "Drop", "HostileServer", "Interim", "Stall", "Trickle", "answer", "envelope",
           "soap12_fault"]


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Cut:
    raw: bytes


@dataclass(frozen=True)
class Stall:
    seconds: float


@dataclass(frozen=True)
class Continue:
    raw: bytes


@dataclass(frozen=True)
class Trickle:
    raw: bytes
    every: float
    size: int = 16


@dataclass(frozen=True)
class Interim:
    head: bytes
    seconds: float
    raw: bytes


def answer(status: str, body: bytes | str, headers: dict[str, str] | None = None, *, chunked: bool = False,
           length: bool = True) -> bytes:
    """An HTTP/1.1 answer as raw bytes (IIS style headers unless given)."""
    body = body.encode() if isinstance(body, str) else body
    head = {"Content-Type": "text/xml; charset=utf-8", "Server": "Microsoft-IIS/10.0",
            "X-AspNet-Version": "4.0.30319", **(headers or {})}
    if chunked:
        head["Transfer-Encoding"] = "chunked"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
        payload += b"0\r\n\r\n"
    else:
        if length:
            head["Content-Length"] = str(len(body))
        payload = body
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def envelope(inner: str, *, prefix: str = "soap") -> str:
    """A SOAP 1.1 envelope around ``inner`` (the Body's content)."""
    return (f'<?xml version="1.0" encoding="utf-8"?><{prefix}:Envelope '
            f'xmlns:{prefix}="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
            f"<{prefix}:Body>{inner}</{prefix}:Body></{prefix}:Envelope>")


def soap12_fault(reason: str, code: str = "soap:Receiver") -> str:
    return ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
            f"<soap:Body><soap:Fault><soap:Code><soap:Value>{code}</soap:Value></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="en">{reason}</soap:Text></soap:Reason></soap:Fault>'
            "</soap:Body></soap:Envelope>")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HostileServer:
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self.connections = 0  # accepted so far
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._played: dict[str, int] = {}
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, path: str, *steps: Any) -> None:
        with self._lock:
            self.scripts[path] = list(steps)
            self._played[path] = 0

    def received(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _next_step(self, path: str) -> Any:
        with self._lock:
            steps = self.scripts.get(path) or [answer("404 Not Found", "<html><head><title>404 - File or "
                                                      "directory not found.</title></head></html>",
                                                      {"Content-Type": "text/html"})]
            index = self._played.get(path, 0)
            self._played[path] = index + 1
            return steps[min(index, len(steps) - 1)]

    def _read_request(self, conn: socket.socket, buffer: bytes) -> tuple[Request | None, bytes]:
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = line.split(" ", 2)
        headers = {}
        for h in header_lines:
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", "0"))
        while len(rest) < size:
            chunk = conn.recv(1 << 20)
            if not chunk:
                return None, b""
            rest += chunk
        return Request(method, path, headers, rest[:size]), rest[size:]

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = self._read_request(conn, buffer)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                step = self._next_step(request.path)
                if isinstance(step, Drop):
                    return
                if isinstance(step, Cut):
                    conn.sendall(step.raw)
                    return
                if isinstance(step, Stall):
                    time.sleep(step.seconds)
                    return
                if isinstance(step, Trickle):
                    for start in range(0, len(step.raw), step.size):
                        conn.sendall(step.raw[start:start + step.size])
                        time.sleep(step.every)
                    continue
                if isinstance(step, Interim):
                    conn.sendall(step.head)
                    time.sleep(step.seconds)
                    step = step.raw
                if isinstance(step, Continue):
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    step = step.raw
                conn.sendall(step)
                if b"connection: close" in step.split(b"\r\n\r\n", 1)[0].lower():
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()
