"""A lean caller for the CIS read methods Balance All makes 250,000 times a run.

Why: zeep costs ~1.75 ms CPU per call (PITFALLS.md), GIL-bound; a 250,000-account Balance All
would need 437 s of CPU for the CIS calls alone, 2.8x its time budget (docs/balance-all.md).
This module does per call only what a call needs, from the same WSDL:

* **request**: the envelope is rendered *once* by zeep from the WSDL (so it is the contract's
  envelope, namespaces, order and SOAPAction included) with placeholder values, and kept as a
  template; per call the XML-escaped values are put in (characters XML cannot carry are refused
  with ValueError, as lxml refuses them in zeep).
* **transport**: :class:`icbridge.soap.http11.Http11Endpoint`, one keep-alive HTTP/1.1
  connection per calling thread (so at most one per call in flight), no environment (no
  REQUESTS_CA_BUNDLE, proxies, netrc), TLS verified (``ca_file`` or the system store;
  ``verify=False`` only when asked), connect and read timeouts. Transport errors are raised as
  the ``requests`` exceptions the zeep path raises (``requests.ReadTimeout``,
  ``requests.ConnectionError`` …). ``urllib3``/``http.client`` cost ~0.3 ms CPU per call here
  (header objects, email.parser), more than the whole rest of the call.
* **response**: parsed with a hardened lxml parser (no DTD, no entities, no network),
  validated against the response element of the WSDL's own schema (``lxml.etree.XMLSchema``,
  as strict as zeep's strict mode), values typed from the schema (decimal, boolean, int,
  string; nil -> None). Errors follow zeep's rules: SOAP fault -> :class:`CisFault`; an HTTP
  error or a body that is not XML -> :class:`CisHttpError`.

The result is the same dataclass the zeep client returns (``BalanceCheckResult``,
``AccountData``), built by the same function; ``tests/test_cis_fastpath.py`` asserts both
paths give equal results for the same calls. No Airflow imports.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from icbridge.soap.cis import CisFault, CisHttpError
from icbridge.soap.client import make_client
from icbridge.soap.http11 import Http11Endpoint

__all__ = ["LeanOperation", "MalformedAnswer"]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_PLACEHOLDER = "ICBLEAN{}X"
_INT_PLACEHOLDER = 918273645  # a placeholder zeep renders for an xs:int field
_NOT_XML_MESSAGE = "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"
_CARRIAGE_RETURN = {"\r": "&#13;"}
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class MalformedAnswer(ValueError):
    """The CIS answered XML that does not follow the WSDL (zeep strict mode refuses it too)."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )


def _schema_source(wsdl: Path) -> bytes:
    """The WSDL's embedded schema as a document of its own (it imports nothing)."""
    root = etree.parse(str(wsdl), _parser()).getroot()
    (schema,) = root.iterfind(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    return etree.tostring(schema)


def _as_sent(text: str) -> str:
    """xs:string as sent (zeep does not strip either; an empty ``<X/>`` stays None, as in zeep)."""
    return text


def _converter(xsd_type: str) -> Any:
    if xsd_type == "decimal":
        return Decimal
    if xsd_type == "boolean":
        return lambda text: text.strip() in ("true", "1")
    if xsd_type == "int":
        return int
    return _as_sent


class LeanOperation:
    """One document/literal SOAP 1.1 operation of a WSDL, called without zeep per call.

    ``call(**values)`` returns the operation's Result as a namespace of typed values (every
    Result field present; absent or nil ones None), or None when the answer has no Result (an
    empty Response, as zeep gives None). Thread-safe: connections and parsers are per thread.
    """

    def __init__(
        self,
        wsdl: Path,
        operation: str,
        endpoint: str,
        credentials: Mapping[str, str],
        *,
        service: str,
        on_fault: Callable[[str, str | None], Exception] | None = None,
        on_http_error: Callable[[int, bytes], Exception] | None = None,
        timeout: float = 30,
        ca_file: str | None = None,
        verify: bool = True,
        pool_maxsize: int = 10,  # noqa: ARG002 - the clients' option; connections are one per calling thread
    ) -> None:
        self.service = service
        self.operation = operation
        self._on_fault = on_fault or (lambda message, code: CisFault(service, operation, message, code))
        self._on_http_error = on_http_error or (lambda status, body: CisHttpError(service, operation, status, body))
        client = make_client(wsdl, endpoint, timeout=timeout, ca_file=ca_file, verify=verify)
        binding_op = client.wsdl.bindings[client.binding_name].get(operation)
        request_fields = [
            (name, element.type.qname.localname if element.type.qname else "")
            for name, element in binding_op.input.body.type.elements
        ]
        sample: dict[str, Any] = {}
        for name, xsd_type in request_fields:
            if name in credentials:
                sample[name] = _PLACEHOLDER.format(name)
            elif xsd_type == "int":
                sample[name] = _INT_PLACEHOLDER + len(sample)
            else:
                sample[name] = _PLACEHOLDER.format(name)
        envelope = etree.tostring(
            client.create_message(client.service, operation, **sample), xml_declaration=True, encoding="utf-8"
        ).decode("utf-8")
        for name, secret in credentials.items():  # fixed per endpoint; never in a repr or a log
            envelope = envelope.replace(_PLACEHOLDER.format(name), escape(secret, _CARRIAGE_RETURN))
        # split the template around the placeholders: text parts and the field names between them
        self._fields: list[tuple[str, str]] = [(n, t) for n, t in request_fields if n not in credentials]
        self._parts: list[str] = []
        rest = envelope
        for name, xsd_type in self._fields:
            token = str(sample[name]) if xsd_type == "int" else _PLACEHOLDER.format(name)
            if rest.count(token) != 1:
                raise RuntimeError(f"cannot make a template of {operation}: {name} placeholder not found once")
            head, rest = rest.split(token)
            self._parts.append(head)
        self._parts.append(rest)
        self._headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{binding_op.soapaction}"',
        }
        (result_name, result_element), *_ = binding_op.output.body.type.elements
        self._response_tag = f"{{{binding_op.output.body.qname.namespace}}}{binding_op.output.body.qname.localname}"
        self._result_tag = f"{{{binding_op.output.body.qname.namespace}}}{result_name}"
        self.result_namespace = binding_op.output.body.qname.namespace
        self._result_fields = {
            f"{{{binding_op.output.body.qname.namespace}}}{name}": (
                name,
                _converter(element.type.qname.localname if element.type.qname else ""),
            )
            for name, element in result_element.type.elements
        }
        self._empty = dict.fromkeys((name for name, _ in self._result_fields.values()), None)
        self._schema_source = _schema_source(Path(wsdl))
        self._local = threading.local()
        self._http = Http11Endpoint(endpoint, timeout=timeout, ca_file=ca_file, verify=verify)

    def __repr__(self) -> str:
        return f"LeanOperation({self.service} {self.operation} -> {self._http.url})"

    def __reduce__(self) -> Any:
        raise TypeError("LeanOperation holds a credential and cannot be pickled")

    def close(self) -> None:
        self._http.close()

    # request --------------------------------------------------------------------------------

    def render(self, **values: Any) -> bytes:
        """The request envelope with ``values`` (every request field but the key) put in."""
        out = [self._parts[0]]
        for (name, xsd_type), part in zip(self._fields, self._parts[1:], strict=True):
            value = values[name]
            if xsd_type == "int":
                text = str(int(value))
            else:
                text = str(value)
                if _NOT_XML.search(text):  # lxml refuses them in zeep's path too
                    raise ValueError(_NOT_XML_MESSAGE)
                text = escape(text, _CARRIAGE_RETURN)  # lxml writes \r as &#13; too (XML parsers drop a raw \r)
            out.append(text)
            out.append(part)
        return "".join(out).encode("utf-8")

    # the call -------------------------------------------------------------------------------

    def call(self, **values: Any) -> SimpleNamespace | None:
        """The Result's fields, typed (absent or nil: None), or None without a Result."""
        result = self.call_element(**values)
        if result is None:
            return None
        values = dict(self._empty)
        for child in result:
            name, convert = self._result_fields[child.tag]
            if child.get(XSI_NIL) in ("true", "1") or (child.text is None and convert is _as_sent):
                continue
            try:
                values[name] = convert(child.text or "")
            except (InvalidOperation, ValueError):
                raise MalformedAnswer(f"{self.service} {self.operation}: {name} {child.text!r}") from None
        return SimpleNamespace(**values)

    def call_element(self, **values: Any) -> etree._Element | None:
        """The Result element, validated against the WSDL's schema, or None without a Result."""
        status, data = self._http.post(self.render(**values), self._headers)
        return self._answer(status, data)

    def _parser(self) -> etree.XMLParser:
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = _parser()
        return parser

    def _schema(self) -> etree.XMLSchema:
        """This thread's XMLSchema of the WSDL (built once per thread, ~1 ms).

        Why not one shared behind a lock: an XMLSchema must not validate in two threads at once,
        and lxml validates with the GIL released, so the lock holder had to win the GIL back
        while the other calling threads queued on the lock behind it — measured at Balance All's
        scale (32 calls in flight) as a fifth of the calling threads' time spent waiting there.
        """
        schema = getattr(self._local, "schema", None)
        if schema is None:
            schema = self._local.schema = etree.XMLSchema(etree.fromstring(self._schema_source, _parser()))
        return schema

    def _answer(self, status: int, data: bytes) -> etree._Element | None:
        """The answer by zeep's rules (zeep.wsdl.bindings.soap.SoapBinding.process_reply)."""
        if status in (201, 202) and not data:
            return None
        if status != 200 and not data:
            raise self._on_http_error(status, data)
        try:
            root = etree.fromstring(data, self._parser())
        except etree.XMLSyntaxError:
            raise self._on_http_error(status, data) from None
        if root.getroottree().docinfo.doctype:
            raise MalformedAnswer(f"{self.service} {self.operation}: the answer has a DTD")
        body = root.find(f"{{{SOAP11}}}Body")
        fault = body.find(f"{{{SOAP11}}}Fault") if body is not None else None
        if fault is not None:
            message = fault.findtext("faultstring") or ""
            raise self._on_fault(message, fault.findtext("faultcode"))
        if status != 200:
            raise self._on_fault("Unknown fault occured", None)
        response = body.find(self._response_tag) if body is not None else None
        if response is None:
            raise MalformedAnswer(f"{self.service} {self.operation}: no {self._response_tag} in the answer")
        schema = self._schema()
        valid = schema.validate(response)
        error = None if valid else str(schema.error_log.last_error)
        if not valid:
            raise MalformedAnswer(f"{self.service} {self.operation}: the answer does not follow the WSDL: {error}")
        return response.find(self._result_tag)
