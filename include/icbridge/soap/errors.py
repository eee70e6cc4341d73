"""What can go wrong with a SOAP call, as exactly one of three kinds (docs/cis-services.md).

* **not sent** — :class:`NotSent`: no complete request left this process (DNS, refused
  connection, connect timeout, TLS handshake or certificate refusal, proxy unreachable). Any
  call, a payment included, may be tried again.
* **sent, no answer** — :class:`NoAnswer` (:class:`AnswerTimeout` for a read timeout): the
  request was written and no complete answer came back (reset, body cut mid-chunk, timeout).
  Reads may be retried; money is *in doubt*.
* **answered** — the peer answered and we judged it: :class:`HttpStatusError` (a non-2xx
  that is not a SOAP envelope, a redirect that is never followed), a SOAP fault (the service
  clients raise their own: ``CisFault``, ``InvoiceCloudError``), :class:`MalformedAnswer` (not
  a SOAP envelope, a DTD, too large, a value of the wrong form) or :class:`MissingValue` (a
  required value nil or absent). Final; never retried blindly.

``NotSent`` and ``NoAnswer`` subclass ``requests.ConnectionError`` (``AnswerTimeout`` also
``requests.ReadTimeout``) so callers that judge ``requests`` exceptions keep working. No
Airflow imports.
"""

from __future__ import annotations

import re

import requests

from icbridge.errors import SoapError

__all__ = [
    "AnswerError",
    "CredentialsRefused",
    "AnswerTimeout",
    "HttpStatusError",
    "MalformedAnswer",
    "MissingValue",
    "NoAnswer",
    "NotSent",
    "TlsRefused",
    "is_credentials_refusal",
    "is_not_sent",
]


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""C0 controls (but TAB, LF, CR) and DEL, replaced in texts taken from peers."""


class NotSent(SoapError, requests.ConnectionError):
    """No complete request left this process: safe to send again, whatever the method."""


class TlsRefused(NotSent, requests.exceptions.SSLError):
    """The TLS handshake failed (certificate, host name, protocol): a retry cannot help."""


class NoAnswer(SoapError, requests.ConnectionError):
    """The request was sent and no complete answer came back: reads retry, money is in doubt."""


class AnswerTimeout(NoAnswer, requests.ReadTimeout):
    """The request was sent and the answer did not come within the read timeout."""


class AnswerError(SoapError):
    """The peer answered, and the answer is an error of ours to judge (never retried blindly)."""

    def __init__(self, service: str, operation: str, message: str) -> None:
        message = _CONTROLS.sub("\ufffd", message)  # a peer's text: it ends up in logs, the state DB and XLSX
        super().__init__(f"{service} {operation}: {message}")
        self.service = service
        self.operation = operation
        self.message = message


class HttpStatusError(AnswerError):
    """A non-2xx answer that is not a SOAP envelope (an IIS error page, a proxy's 502) or a
    redirect (never followed: the envelope carries the key). ``retryable`` for reads: 5xx, 408
    and 429; ``retry_after`` seconds when the peer said so."""

    def __init__(
        self,
        service: str,
        operation: str,
        status_code: int,
        body: bytes | None = None,
        *,
        title: str = "",
        location_host: str = "",
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        if 300 <= status_code < 400:
            detail = f"redirect to {location_host or 'an unnamed location'} not followed"
        else:  # the page's title, else its text, else the status line's reason (WCF's 415 explains itself there)
            detail = title or (body or b"")[:200].decode("utf-8", "replace").strip() or reason.strip()
        super().__init__(service, operation, f"HTTP {status_code}: {detail}".rstrip(": "))
        self.status_code = status_code
        self.title = title
        self.location_host = location_host
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status_code >= 500 or self.status_code in (408, 429)


class MalformedAnswer(AnswerError):
    """The answer cannot be judged: not a SOAP envelope, a DTD, too large, a value of the wrong form."""


class MissingValue(MalformedAnswer):
    """A value the contract requires came nil or absent. Names the field and the (masked) account."""

    def __init__(self, service: str, operation: str, path: str, account: str = "") -> None:
        where = f" (account {account})" if account else ""
        super().__init__(service, operation, f"{path} is required but was nil or absent{where}")
        self.path = path
        self.account = account


class CredentialsRefused(AnswerError):
    """The peer refused our credentials (a SOAP fault saying so): nothing was applied, and no
    retry can help until the connection's key/GUID is fixed — the task fails at once."""

    retry = False


_DOTNET_TYPE = re.compile(r"\b(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*Exception\b")
"""A .NET exception type name in an ASMX fault's text (``System.UnauthorizedAccessException``,
``System.Security.Authentication.AuthenticationException``): the service's own failure — maybe
after it applied the call — never a refusal of our credentials."""
_CREDENTIAL_WORDS = ("credential", "authenticat", "unauthori", "web service key", "webservicekey", "biller guid")


def is_credentials_refusal(text: str) -> bool:
    """Whether a refusal's text says the credentials were refused (IC's and the CIS vendors'
    wording: "Invalid credentials", "Authentication failed", "Unauthorized", "invalid web
    service key"). The project's assumption: docs/cis-services.md. .NET exception type names
    in the text are not read (an ASMX fault names the exception it caught)."""
    lowered = _DOTNET_TYPE.sub(" ", text).lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def is_not_sent(exc: BaseException) -> bool:
    """True only when the request provably never reached the peer (the one judgement of it)."""
    return isinstance(exc, NotSent)
