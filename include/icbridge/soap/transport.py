"""HTTP for every SOAP call: urllib3's connection pools (the library requests itself uses).

What it gives the SOAP layer (icbridge.soap.operation), for IIS/ASP.NET peers as they are:

* keep-alive pools per endpoint; a connection the server closed while idle is noticed before
  reuse (urllib3 polls the socket; no ``select()`` limit of 1,024 descriptors); chunked and
  ``Content-Length`` bodies, ``100 Continue`` before the answer, bodiless 204/304;
* TLS verified against ``ca_file`` or the system store (``verify=False`` only when asked);
  nothing read from the environment (no REQUESTS_CA_BUNDLE, no ``*_proxy`` variables);
* an optional egress proxy per connection (``proxy``: ``http://host:port``; HTTPS endpoints
  are tunnelled with CONNECT);
* redirects are never followed (the envelope carries the web-service key): the 3xx comes
  back as an answer for the caller to refuse;
* an answer larger than ``max_answer_bytes`` is refused with an error naming the limit;
* every call ends within ``timeout`` seconds (+0.5 s) *overall* (connect, request, headers, body):
  a peer that trickles its answer (a chunk every half second) cannot hold a call open past
  it. One watchdog thread per process shuts the call's socket at its deadline; the call then
  fails as :class:`~icbridge.soap.errors.AnswerTimeout` (or NotSent if the request was not
  yet written whole). The per-read ``timeout`` still applies to each socket read;
* a 2xx answer with no framing (neither ``Content-Length`` nor chunked) and no body is *sent,
  no answer*: it is what http.client makes of a connection closed inside the headers;
* an interim ``1xx`` answer other than ``100`` (``102 Processing``, a proxy's ``103 Early
  Hints``), which http.client hands back as if final, is *sent, no answer* and its connection
  is discarded (the real answer would otherwise answer the next call on it);
* every failure as exactly one of :class:`~icbridge.soap.errors.NotSent` (no complete
  request written: connection, TLS, proxy) or :class:`~icbridge.soap.errors.NoAnswer` /
  :class:`~icbridge.soap.errors.AnswerTimeout` (written, no complete answer). Which one is
  known from the connection itself (it records whether the whole request was written), not
  guessed from exception texts. Nothing is retried here: the caller's policy decides.

No Airflow imports.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from icbridge.errors import SoapError
from icbridge.soap.errors import AnswerTimeout, NoAnswer, NotSent, TlsRefused

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "Answer", "AnswerTooLarge", "HttpTransport"]

DEFAULT_MAX_ANSWER_BYTES = 128 << 20
"""128 MiB: a 50 MB bill PDF is ~67 MB as base64 text, plus the envelope."""

DEADLINE_MARGIN_S = 0.5
"""A call's overall deadline is its ``timeout`` plus this (so a plain read timeout, which
says more, fires first when the peer is simply silent)."""


class AnswerTooLarge(SoapError):
    """The answer exceeds ``max_answer_bytes`` (the caller names its operation)."""


_state = threading.local()  # per calling thread: was the whole request written? which call is it?


def _mark_written(value: bool) -> None:
    _state.written = value


class _Call:
    """One call's deadline: the watchdog shuts its connection's socket when it passes."""

    __slots__ = ("conn", "done", "expired", "lock")

    def __init__(self) -> None:
        self.conn: Any = None
        self.done = False
        self.expired = False
        self.lock = threading.Lock()

    def expire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            sock = getattr(self.conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.lock:
            self.done = True


class _Watchdog:
    """One thread for every call's deadline in the process (a heap, earliest first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Call]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, call: _Call, seconds: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._seq), call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="icb-soap-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                _, _, call = heapq.heappop(self._heap)
                call.expire()


_watchdog = _Watchdog()


class _Recording:
    """Mixin for urllib3's connections: the request line, headers and body leave in one
    ``send`` (urllib3 sends headers and body apart: two TCP segments a call), and the calling
    thread learns whether the whole request was written (NotSent vs NoAnswer)."""

    _icb_buffer: list[bytes] | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        _mark_written(False)
        call = getattr(_state, "call", None)
        if call is not None:
            call.conn = self  # the watchdog shuts this connection's socket at the call's deadline
        self._icb_buffer = []
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
            data = b"".join(self._icb_buffer)
        finally:
            self._icb_buffer = None
        super().send(data)  # type: ignore[misc]  # connects first when needed (http.client auto_open)
        _mark_written(True)

    def send(self, data: Any) -> None:
        if self._icb_buffer is not None and isinstance(data, bytes | bytearray | memoryview):
            self._icb_buffer.append(bytes(data))
            return
        super().send(data)  # type: ignore[misc]


class _RecordingConnection(_Recording, HTTPConnection):
    pass


class _RecordingTlsConnection(_Recording, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _RecordingConnection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _RecordingTlsConnection


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (names lower case) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""  # the status line's reason phrase (WCF explains a 415 there)


def _tls_refusal(exc: BaseException) -> bool:
    """Whether a certificate or host-name check is behind ``exc`` (urllib3 wraps it)."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and isinstance(
            seen.args[0], BaseException) else None)
    return False


class HttpTransport:
    """POSTs to one endpoint URL over a keep-alive pool (thread-safe; ``pool_maxsize``
    connections kept, more opened when more threads call at once)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        ca_file: str | None = None,
        verify: bool = True,
        proxy: str | None = None,
        pool_maxsize: int = 10,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.deadline = timeout + DEADLINE_MARGIN_S  # the whole call, connect to the body's last byte
        self.max_answer_bytes = max_answer_bytes
        options: dict[str, Any] = {"maxsize": max(1, pool_maxsize), "block": False}
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            if not verify and not ca_file:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            options["ssl_context"] = context
        self.proxied = bool(proxy)
        self._target = url  # what urlopen is given: the absolute URL through a proxy, else the path
        if proxy:
            if urlsplit(proxy).scheme not in ("http", "https"):
                raise ValueError("proxy must be an http:// or https:// URL")
            manager = urllib3.ProxyManager(proxy, num_pools=2, **options)
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
            self._opener: Any = manager
        else:  # one pool for the one endpoint: no per-call URL parsing or pool lookup
            pool_class = _TlsPool if parts.scheme == "https" else _Pool
            self._opener = pool_class(parts.hostname, parts.port, **options)
            self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def __repr__(self) -> str:
        return f"HttpTransport({self.url!r}{', proxied' if self.proxied else ''})"

    def close(self) -> None:
        if isinstance(self._opener, urllib3.PoolManager):
            self._opener.clear()
        else:
            self._opener.close()

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body``; the answer whatever its status. Raises NotSent / NoAnswer /
        AnswerTimeout on transport failures, AnswerTooLarge over ``max_answer_bytes``."""
        call = _state.call = _Call()
        _watchdog.watch(call, self.deadline)
        try:
            return self._post(body, headers, call)
        except (NotSent, NoAnswer) as exc:
            if call.expired:
                # one text whatever the shut socket made the read raise (a reset, a timeout): the cause is chained
                raise AnswerTimeout(f"{self.url}: no whole answer within {self.deadline:g} s (the call's deadline)"
                                    ) if getattr(_state, "written", False) else \
                    NotSent(f"{self.url}: the request could not be written within {self.deadline:g} s") from exc
            raise
        finally:
            call.finish()
            _state.call = None

    def _post(self, body: bytes, headers: dict[str, str], call: _Call) -> Answer:
        _mark_written(False)
        try:
            response = self._opener.urlopen(
                "POST", self._target, body=body, headers=headers, redirect=False, retries=False,
                preload_content=False, timeout=self.timeout, assert_same_host=False,
            )
        except (Urllib3Error, OSError) as exc:
            raise self._failure(exc, reading=False) from exc
        if response.status < 200:  # an interim 1xx http.client does not skip (102, 103): the final answer
            response.close()       # may still come on this connection — it must answer no other call
            response.release_conn()
            raise NoAnswer(f"{self.url}: an interim HTTP {response.status} and no final answer read "
                           "(connection discarded)")
        try:
            data = self._read(response)
        except AnswerTooLarge:
            response.close()  # do not read the rest
            raise
        except (Urllib3Error, OSError) as exc:
            raise self._failure(exc, reading=True) from exc
        finally:
            call.finish()  # before the connection goes back to the pool: the watchdog never shuts a later call's
            response.release_conn()
        if call.expired:  # the deadline passed as the last bytes came: not an answer to act on
            raise AnswerTimeout(f"{self.url}: no whole answer within {self.deadline:g} s (the call's deadline)")
        found = {k.lower(): v for k, v in response.headers.items()}
        if (200 <= response.status < 300 and not data and "content-length" not in found
                and "chunked" not in found.get("transfer-encoding", "").lower() and response.status not in (204, 205)):
            raise NoAnswer(f"{self.url}: HTTP {response.status} with no Content-Length, no chunked body and no bytes: "
                           "the connection closed before the answer's headers were complete")
        return Answer(response.status, found, data, str(response.reason or ""))

    def _read(self, response: urllib3.BaseHTTPResponse) -> bytes:
        length = response.headers.get("content-length")
        if length and length.isascii() and length.isdigit() and int(length) > self.max_answer_bytes:
            raise AnswerTooLarge(self._too_large())
        parts, total = [], 0
        for chunk in response.stream(1 << 16, decode_content=True):
            total += len(chunk)
            if total > self.max_answer_bytes:
                raise AnswerTooLarge(self._too_large())
            parts.append(chunk)
        return b"".join(parts)

    def _too_large(self) -> str:
        return (f"answer larger than max_answer_bytes = {self.max_answer_bytes:,} bytes "
                "(connection extra max_answer_mb)")

    def _failure(self, exc: BaseException, *, reading: bool) -> Exception:
        written = getattr(_state, "written", False) or reading
        text = f"{self.url}: {type(exc).__name__}: {exc}"
        if not written:
            return TlsRefused(text) if _tls_refusal(exc) else NotSent(text)
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return AnswerTimeout(f"{self.url}: no answer within {self.timeout.read_timeout} s")
        return NoAnswer(text)
