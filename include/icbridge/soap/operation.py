"""One SOAP operation at one endpoint: render the request, POST it, judge the answer.

This is the single call path of every IC, inHance and AUS method (docs/cis-services.md):

* **request**: rendered by zeep from the WSDL (``client.create_message``: the contract's
  envelope, namespaces, order, types) — or, for the read methods Balance All makes 250,000
  times (``template=True``), rendered *once* by zeep with placeholders and kept as a template
  into which each call's XML-escaped values are put. Characters XML cannot carry are refused
  with ValueError on both.
* **transport**: :class:`icbridge.soap.transport.HttpTransport` (urllib3 pools; no redirects
  followed; every failure *not sent* or *sent, no answer*).
* **answer**, judged in this order, the same for every operation:
  1. a 3xx: :class:`HttpStatusError` naming the Location's host (never followed);
  2. a body that is not a SOAP 1.1/1.2 envelope (an IIS/ASP.NET error page with its
     DOCTYPE, a proxy's page, a login page): with a non-2xx status an
     :class:`HttpStatusError` with the status and the page's title; with a 2xx a
     :class:`MalformedAnswer` (an empty body is an empty answer: ``None``);
  3. a SOAP 1.1 or 1.2 fault (the Body's only element; beside others: :class:`MalformedAnswer`):
     ``on_fault(reason text, code)`` (the service's own error) —
     or :class:`CredentialsRefused` when its text says the credentials were refused; with a
     502 or 504 it is a gateway's fault (the service's outcome unknown): :class:`HttpStatusError`;
  4. any other non-200: :class:`HttpStatusError`;
  5. the ``…Response`` element read by the operation's contract (icbridge.soap.contract):
     a :class:`~icbridge.soap.contract.Record`, or None when there is no Result.
  Parsing: lxml with DTD loading, entities and network off; a DOCTYPE in a 2xx SOAP answer
  is refused. Huge text nodes (bill PDFs, BIF parts) are allowed for the operations that
  carry them (``huge=True``), within the transport's ``max_answer_bytes``.

No Airflow imports.
"""

from __future__ import annotations

import base64
import email.utils
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import pybase64
from lxml import etree

from icbridge.soap.client import BoundClient
from icbridge.soap.contract import OperationContract, Record, operation_contract, parser, read_result
from icbridge.soap.errors import CredentialsRefused, HttpStatusError, MalformedAnswer, is_credentials_refusal
from icbridge.soap.transport import AnswerTooLarge, HttpTransport

__all__ = ["SoapOperation", "judge_http"]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
_ENVELOPES = {f"{{{SOAP11}}}Envelope": SOAP11, f"{{{SOAP12}}}Envelope": SOAP12}
_PLACEHOLDER = "ICBLEAN{}X"
_INT_PLACEHOLDER = 918273645  # a placeholder zeep renders for an xs:int field
_NOT_XML_MESSAGE = "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"
_CARRIAGE_RETURN = {"\r": "&#13;"}
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_DIGITS = re.compile(r"[0-9]+")
MAX_RETRY_AFTER_S = 300.0
_GATEWAY_STATUSES = frozenset({502, 504})
"""A SOAP fault with these is a gateway's (API gateway, proxy) saying the service did not answer
in time or properly — the service may have applied the call: an HttpStatusError, never a fault."""


def _title(body: bytes) -> str:
    match = _TITLE.search(body[:65536])
    if not match:
        return ""
    return _SPACES.sub(" ", match.group(1).decode("utf-8", "replace")).strip()[:160]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):  # not str.isdigit(): it takes "²", which float() refuses
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_S))


def judge_http(service: str, operation: str, status: int, headers: Mapping[str, str], body: bytes,
               envelope: etree._Element | None, reason: str = "") -> None:
    """Steps 1, 2 and 4 of the answer rules for a status and a parsed envelope (or None)."""
    if 300 <= status < 400:
        location = headers.get("location", "")
        try:
            host = urlsplit(location).hostname or location
        except ValueError:  # "http://[host": an answer still (never followed), not a ValueError of ours
            host = location[:200]
        raise HttpStatusError(service, operation, status, body, location_host=host)
    if envelope is None and not 200 <= status < 300:
        raise HttpStatusError(service, operation, status, body, title=_title(body), reason=reason,
                              retry_after=_retry_after(headers.get("retry-after")))


class SoapOperation:
    """One document/literal operation of ``wsdl`` posted to ``transport``'s endpoint.

    ``call(**values)`` returns the Result as a :class:`~icbridge.soap.contract.Record` (None
    without one). Thread-safe. ``credentials`` (key, GUID) are put into every request and kept
    out of repr; the object cannot be pickled.
    """

    def __init__(
        self,
        client: BoundClient,
        operation: str,
        transport: HttpTransport,
        credentials: Mapping[str, str],
        *,
        service: str,
        on_fault: Callable[[str, str | None], Exception],
        template: bool = False,
        huge: bool = False,
    ) -> None:
        self.service = service
        self.operation = operation
        self._client = client
        self._transport = transport
        self._credentials = dict(credentials)
        self._on_fault = on_fault
        self._huge = huge
        self._local = threading.local()
        binding_op = client.wsdl.bindings[client.binding_name].get(operation)
        self._headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{binding_op.soapaction}"'}
        self.contract: OperationContract = operation_contract(Path(client.wsdl.location), operation, service)
        self._parts: list[bytes] | None = None
        self._fields: list[tuple[str, str]] = []
        if template:
            self._make_template(binding_op)

    def __repr__(self) -> str:
        return f"SoapOperation({self.service} {self.operation} -> {self._transport.url})"

    def __reduce__(self) -> Any:
        raise TypeError("SoapOperation holds a credential and cannot be pickled")

    # request --------------------------------------------------------------------------------

    def _make_template(self, binding_op: Any) -> None:
        request_fields = [
            (name, element.type.qname.localname if element.type.qname else "")
            for name, element in binding_op.input.body.type.elements
        ]
        sample: dict[str, Any] = {}
        for name, xsd_type in request_fields:
            sample[name] = _INT_PLACEHOLDER + len(sample) if xsd_type == "int" else _PLACEHOLDER.format(name)
            if xsd_type == "base64Binary":  # zeep encodes bytes; the envelope holds the base64 of the placeholder
                sample[name] = sample[name].encode("ascii")
        envelope = etree.tostring(
            self._client.create_message(self._client.service, self.operation, **sample),
            xml_declaration=True, encoding="utf-8",
        ).decode("utf-8")
        for name, secret in self._credentials.items():  # fixed per endpoint; never in a repr or a log
            envelope = envelope.replace(_PLACEHOLDER.format(name), escape(secret, _CARRIAGE_RETURN))
        self._fields = [(n, t) for n, t in request_fields if n not in self._credentials]
        parts: list[str] = []
        rest = envelope
        for name, xsd_type in self._fields:
            token = str(sample[name]) if xsd_type == "int" else _PLACEHOLDER.format(name)
            if xsd_type == "base64Binary":
                token = base64.b64encode(sample[name]).decode("ascii")
            if rest.count(token) != 1:
                raise RuntimeError(f"cannot make a template of {self.operation}: {name} placeholder not found once")
            head, rest = rest.split(token)
            parts.append(head)
        parts.append(rest)
        self._parts = [part.encode("utf-8") for part in parts]

    def render(self, **values: Any) -> bytes:
        """The request envelope with ``values`` (every request field but the credentials)."""
        if self._parts is None:
            message = self._client.create_message(self._client.service, self.operation, **values,
                                                  **self._credentials)
            return etree.tostring(message, xml_declaration=True, encoding="utf-8")
        out = [self._parts[0]]
        for (name, xsd_type), part in zip(self._fields, self._parts[1:], strict=True):
            value = values[name]
            if xsd_type == "int":
                out.append(str(int(value)).encode("ascii"))
            elif xsd_type == "base64Binary":  # its alphabet needs no escaping (a BIF part: ~27 MB of it),
                out.append(pybase64.b64encode(value))  # joined as bytes: no str copies of it (SIMD: ~5x base64's)
            else:
                text = str(value)
                if _NOT_XML.search(text):  # lxml refuses them on zeep's rendering too
                    raise ValueError(_NOT_XML_MESSAGE)
                out.append(escape(text, _CARRIAGE_RETURN).encode("utf-8"))  # lxml writes \r as &#13; too
            out.append(part)
        return b"".join(out)

    # the call -------------------------------------------------------------------------------

    def call(self, **values: Any) -> Record | None:
        """Post one request; the Result (None: an empty answer), or the error the rules say."""
        body = self.render(**values)
        try:
            answer = self._transport.post(body, self._headers)
        except AnswerTooLarge as exc:
            raise MalformedAnswer(self.service, self.operation, str(exc)) from None
        return self.read(answer.status, answer.headers, answer.body, reason=answer.reason)

    def _parser(self) -> etree.XMLParser:
        parser_ = getattr(self._local, "parser", None)
        if parser_ is None:
            parser_ = self._local.parser = parser(huge=self._huge)
        return parser_

    def _envelope(self, body: bytes) -> etree._Element | None:
        """The SOAP envelope of ``body``, or None when the body is not one (HTML, text, empty)."""
        if not body.strip():
            return None
        try:
            root = etree.fromstring(body, self._parser())
        except etree.XMLSyntaxError as exc:
            if "huge" in str(exc).lower() or "too long" in str(exc).lower():
                raise MalformedAnswer(self.service, self.operation, f"an XML node exceeds the parser's limit: {exc}"
                                      ) from None
            return None
        if root.tag not in _ENVELOPES:
            return None
        if root.getroottree().docinfo.doctype:
            raise MalformedAnswer(self.service, self.operation, "a SOAP answer with a DOCTYPE (refused)")
        return root

    def read(self, status: int, headers: Mapping[str, str], body: bytes, *, reason: str = "") -> Record | None:
        """Judge one HTTP answer by the rules in the module docstring."""
        envelope = self._envelope(body) if not 300 <= status < 400 else None
        judge_http(self.service, self.operation, status, headers, body, envelope, reason)
        if envelope is None:
            if not body.strip():
                return None  # an empty answer: the caller judges it (money: in doubt)
            title = _title(body)
            raise MalformedAnswer(self.service, self.operation, f"HTTP {status} answer is not a SOAP envelope"
                                  + (f" (page titled {title!r})" if title else ""))
        ns = _ENVELOPES[envelope.tag]
        bodies = envelope.findall(f"{{{ns}}}Body")
        if not bodies:
            raise MalformedAnswer(self.service, self.operation, "the SOAP envelope has no Body")
        if len(bodies) > 1:
            raise MalformedAnswer(self.service, self.operation, f"the SOAP envelope has {len(bodies)} Body elements "
                                  "(an answer that cannot be judged)")
        (soap_body,) = bodies
        fault = soap_body.find(f"{{{ns}}}Fault")
        if fault is not None:
            if sum(1 for c in soap_body if isinstance(c.tag, str)) > 1:  # a fault message has it alone
                raise MalformedAnswer(self.service, self.operation, "a Fault beside other elements in the SOAP "
                                      "Body (an answer that cannot be judged)")
            message, code = _fault(fault, ns)
            if status in _GATEWAY_STATUSES:  # a gateway's fault (the service did not answer it): not a refusal
                raise HttpStatusError(self.service, self.operation, status, body,
                                      title=f"a gateway's SOAP fault: {message}",
                                      retry_after=_retry_after(headers.get("retry-after")))
            if is_credentials_refusal(message):
                raise CredentialsRefused(self.service, self.operation, f"credentials refused: {message}")
            raise self._on_fault(message, code)
        if status != 200:
            raise HttpStatusError(self.service, self.operation, status, body, title="a SOAP answer without a fault",
                                  retry_after=_retry_after(headers.get("retry-after")))
        responses = [c for c in soap_body
                     if isinstance(c.tag, str) and etree.QName(c).localname == self.contract.response]
        if len(responses) > 1:
            raise MalformedAnswer(self.service, self.operation, f"{self.contract.response} came {len(responses)} "
                                  "times (an answer that cannot be judged)")
        if responses:
            return read_result(self.contract, responses[0])
        raise MalformedAnswer(self.service, self.operation, f"no {self.contract.response} in the answer")


def _fault(fault: etree._Element, ns: str) -> tuple[str, str | None]:
    """(reason text, code) of a SOAP 1.1 or 1.2 Fault."""
    if ns == SOAP12:
        reason = fault.findtext(f"{{{ns}}}Reason/{{{ns}}}Text")
        code = fault.findtext(f"{{{ns}}}Code/{{{ns}}}Value")
        sub = fault.findtext(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value")
        return (reason or "").strip() or "SOAP fault without a reason", (sub or code or "").strip() or None
    reason = next((c.text for c in fault if isinstance(c.tag, str) and etree.QName(c).localname == "faultstring"),
                  None)
    code = next((c.text for c in fault if isinstance(c.tag, str) and etree.QName(c).localname == "faultcode"), None)
    return (reason or "").strip() or "SOAP fault without a reason", (code or "").strip() or None
