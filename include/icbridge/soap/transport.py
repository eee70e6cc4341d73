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

import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from icbridge.soap.errors import AnswerTimeout, NoAnswer, NotSent, TlsRefused

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "Answer", "AnswerTooLarge", "HttpTransport"]

DEFAULT_MAX_ANSWER_BYTES = 128 << 20
"""128 MiB: a 50 MB bill PDF is ~67 MB as base64 text, plus the envelope."""

class AnswerTooLarge(Exception):
    """The answer exceeds ``max_answer_bytes`` (the caller names its operation)."""


_state = threading.local()  # per calling thread: was the whole request written?


def _mark_written(value: bool) -> None:
    _state.written = value


class _Recording:
    """Mixin for urllib3's connections: the request line, headers and body leave in one
    ``send`` (urllib3 sends headers and body apart: two TCP segments a call), and the calling
    thread learns whether the whole request was written (NotSent vs NoAnswer)."""

    _icb_buffer: list[bytes] | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        _mark_written(False)
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
            response.release_conn()
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, data)

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
