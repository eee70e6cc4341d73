"""SOAP envelopes as the simulators read and write them: a request's arguments, an ASMX answer, a fault.

:func:`request_args` turns a request element into the dict of strings a handler receives;
:func:`answer_envelope` writes ``<MethodResponse><MethodResult>…`` from the dict it returns
(:data:`NIL` for ``xsi:nil``), :func:`fault_envelope` a SOAP 1.1 or 1.2 fault. The rules are
those of :mod:`icbsim.soapserver`'s docstring.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

__all__ = [
    "CONTENT_TYPES",
    "NIL",
    "SOAP11",
    "SOAP12",
    "SoapFault",
    "answer_envelope",
    "fault_envelope",
    "request_args",
    "safe_parser",
    "thread_parser",
    "xsd_text",
]

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


def thread_parser() -> etree.XMLParser:
    """This thread's :func:`safe_parser` (an lxml parser is not shared between threads; making
    one per request cost more than parsing the request)."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = safe_parser()
    return parser


def xsd_text(value: Any) -> str:
    """A Python value in its xsd lexical form (bool, Decimal, date/datetime, bytes as base64)."""
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


def render_value(out: list[str], name: str, value: Any) -> None:
    """Append ``<name>value</name>`` (unprefixed: the Response element declares the default
    namespace). Written as text, not lxml nodes: ~5x cheaper, and the answers are small."""
    if value is None:
        return
    if value is NIL:
        out.append(f'<{name} xsi:nil="true" />')
    elif isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, sub in value.items():
            render_value(out, key, sub)
        out.append(f"</{name}>")
    elif isinstance(value, list | tuple):
        out.append(f"<{name}>")
        for item in value:
            if not isinstance(item, Mapping) or len(item) != 1:
                raise TypeError(f"{name}: list items must be one-key dicts {{'Item': value}}, got {item!r}")
            ((tag, sub),) = item.items()
            render_value(out, tag, sub)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_escaped(xsd_text(value))}</{name}>")


def request_args(element: etree._Element) -> dict[str, Any]:
    """A request element as the dict of strings a handler receives (nested: dicts, repeated: lists, nil: None)."""
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if child.get(f"{{{XSI}}}nil") in ("true", "1"):
            value: Any = None
        elif len(child):
            value = request_args(child)
        else:
            value = child.text or ""
        if name in out:  # a repeated element: values are never lists otherwise
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


def _envelope_root(soap_ns: str) -> tuple[etree._Element, etree._Element]:
    env = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns, "xsi": XSI, "xsd": XSD})
    return env, etree.SubElement(env, f"{{{soap_ns}}}Body")


def answer_envelope(soap_ns: str, ns: str, operation: str, result: Mapping[str, Any] | None) -> bytes:
    """The ASMX answer of ``operation`` in namespace ``ns``: ``<operationResult>`` left out for None."""
    out = [
        "<?xml version='1.0' encoding='utf-8'?>\n",
        f'<soap:Envelope xmlns:soap="{soap_ns}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"><soap:Body>',
        f'<{operation}Response xmlns={quoteattr(ns)}>',
    ]
    if result is not None:
        render_value(out, f"{operation}Result", dict(result))
    out.append(f"</{operation}Response></soap:Body></soap:Envelope>")
    return "".join(out).encode("utf-8")


def fault_envelope(soap_ns: str, fault: SoapFault) -> bytes:
    """``fault`` as a SOAP 1.1 (faultcode soap:Client/Server) or 1.2 (soap:Sender/Receiver) Fault."""
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
