"""One answer contract per operation, read from the WSDL as data, for every SOAP answer.

Why: IC's and the CIS vendors' services are ASP.NET ASMX. They may legitimately send a null
item of an ``ArrayOf…`` (``<Payment xsi:nil="true"/>``), omit a value member
(``*Specified=false``), send ``xsi:nil`` for a value, add an element in a newer version or
write known elements in another order. The vendors' own .NET clients (XmlSerializer) read
known elements by name and ignore the rest; so does this reader. What it never does is turn
a value it did not receive into a 0, a False or a ``datetime.min``.

The contract of a field (from the WSDL's schema, docs/cis-services.md):

* **required**: a value type (decimal, int, long, boolean, date, dateTime) with
  ``minOccurs="1"`` and not ``nillable`` — or any field marked ``icb:required="true"`` (the
  keys: account, invoice, PaymentGUID, change type). Nil or absent raises
  :class:`~icbridge.soap.errors.MissingValue` *when the field is read* — so a field the
  caller does not use (a Balance on an answer that says Success=false) does not fail the call.
* **optional**: everything else; nil or absent reads as ``None`` (a string sent empty,
  ``<X/>``, reads ``""``). The caller decides what None means (never a default).
* **lists** (``maxOccurs="unbounded"``): a nil item is skipped and counted
  (:attr:`Record.nil_items`, logged once per operation per process).
* **forms** accepted as .NET writes them: booleans ``true/false/1/0`` in any case; a
  DateTime where the WSDL says ``xs:date`` (its date part); 7 fraction digits; ``long`` where
  ``int`` is declared. A value in no accepted form raises
  :class:`~icbridge.soap.errors.MalformedAnswer` when read.

No Airflow imports.
"""

from __future__ import annotations

import binascii
import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

from icbridge.masking import mask_account
from icbridge.soap.errors import MalformedAnswer, MissingValue
from icbridge.soap.xsd_values import CONVERTERS

__all__ = ["CONVERTERS", "Field", "OperationContract", "Record", "operation_contract", "parser", "reset_reports"]

log = logging.getLogger(__name__)

XSD = "http://www.w3.org/2001/XMLSchema"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_WSDL = "http://schemas.xmlsoap.org/wsdl/soap/"
ICB = "urn:icbridge:contract"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

VALUE_TYPES = frozenset({"decimal", "int", "long", "boolean", "date", "dateTime"})
_ACCOUNT_FIELDS = ("AccountNumber", "Accountnumber")


def parser(*, huge: bool = False) -> etree.XMLParser:
    """The one hardened parser: no DTD loading, no entities, no network, comments dropped.
    ``huge`` lifts libxml2's 10 MB text-node limit (bill PDFs, BIF parts) — only ever together
    with entities, DTDs and network off, as here."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=huge, remove_comments=True
    )


# the contract as data -----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One element of a complex type: its XSD type (local name), whether it is a complex type,
    whether a value is required, whether it repeats."""

    name: str
    type: str
    complex: bool
    required: bool
    nillable: bool
    many: bool


@dataclass(frozen=True)
class OperationContract:
    """The answer side of one operation: ``Response/Result`` and every complex type below it."""

    service: str
    operation: str
    namespace: str
    response: str  # local name of the response element
    result: Field | None  # None: the response has no Result (a void method)
    types: dict[str, dict[str, Field]]

    def describe(self) -> list[tuple[str, str, bool, bool]]:
        """(path, type, required, nillable) of every field under the Result, for the docs."""
        rows: list[tuple[str, str, bool, bool]] = []

        def walk(type_name: str, prefix: str, seen: tuple[str, ...]) -> None:
            for f in self.types.get(type_name, {}).values():
                path = f"{prefix}.{f.name}" + ("[]" if f.many else "")
                rows.append((path, f.type, f.required, f.nillable))
                if f.complex and f.type not in seen:
                    walk(f.type, path, (*seen, f.type))

        if self.result is not None:
            walk(self.result.type, self.result.name, (self.result.type,))
        return rows


def _local(qname: str | None) -> str:
    return (qname or "").rpartition(":")[2]


def _field(element: etree._Element) -> Field:
    xsd_type = _local(element.get("type"))
    complex_ = xsd_type not in CONVERTERS
    nillable = element.get("nillable") == "true"
    value_required = xsd_type in VALUE_TYPES and element.get("minOccurs", "1") != "0" and not nillable
    return Field(
        name=element.get("name", ""),
        type=xsd_type,
        complex=complex_,
        required=value_required or element.get(f"{{{ICB}}}required") == "true",
        nillable=nillable,
        many=element.get("maxOccurs", "1") not in ("0", "1"),
    )


@functools.lru_cache(maxsize=64)
def _schema(wsdl: str) -> tuple[str, dict[str, etree._Element], dict[str, dict[str, Field]]]:
    root = etree.parse(wsdl, parser()).getroot()
    (schema,) = root.iterfind(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    namespace = schema.get("targetNamespace", "")
    elements = {e.get("name", ""): e for e in schema.iterfind(f"{{{XSD}}}element")}
    types = {
        t.get("name", ""): {f.name: f for f in map(_field, t.iterfind(f"{{{XSD}}}sequence/{{{XSD}}}element"))}
        for t in schema.iterfind(f"{{{XSD}}}complexType")
    }
    return namespace, elements, types


@functools.lru_cache(maxsize=256)
def operation_contract(wsdl: str | Path, operation: str, service: str) -> OperationContract:
    """The answer contract of ``operation`` in ``wsdl`` (parsed once per process)."""
    namespace, elements, types = _schema(str(wsdl))
    response = f"{operation}Response"
    if response not in elements:
        raise ValueError(f"{wsdl}: no element {response}")
    children = elements[response].findall(f"{{{XSD}}}complexType/{{{XSD}}}sequence/{{{XSD}}}element")
    result = _field(children[0]) if children else None
    return OperationContract(service, operation, namespace, response, result, types)


# reading an answer ----------------------------------------------------------------------------

_reported: set[tuple[str, ...]] = set()
_reported_lock = threading.Lock()


def _report_once(key: tuple[str, ...], message: str, *args: Any) -> None:
    with _reported_lock:
        if key in _reported:
            return
        _reported.add(key)
    log.warning(message, *args)


def reset_reports() -> None:
    """Forget which unknown elements and nil items were logged (a new run; tests)."""
    with _reported_lock:
        _reported.clear()


class _Bad:
    """A value received in no accepted form (or more than once): raises when read."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str = "") -> None:
        self.text = text
        self.reason = reason


_DUPLICATE = _Bad("", "came more than once (an answer that cannot be judged)")


_ABSENT = object()


class Record:
    """The values of one complex element as received, read by name (``record.Balance`` or
    ``record["Balance"]``). A required field that was nil or absent raises MissingValue when
    read; an optional one reads None; a list reads as a list of Records (nil items skipped,
    counted in ``nil_items``). ``get(name)`` reads without the required check (None if missing).
    """

    __slots__ = ("_contract", "_fields", "_path", "_values", "nil_items")

    def __init__(self, contract: OperationContract, fields: dict[str, Field], path: str, values: dict[str, Any],
                 nil_items: int = 0) -> None:
        self._contract = contract
        self._fields = fields
        self._path = path
        self._values = values
        self.nil_items = nil_items

    def __repr__(self) -> str:  # values may hold accounts or emails: names only
        return f"Record({self._path}: {', '.join(sorted(self._values))})"

    def _account(self) -> str:
        for name in _ACCOUNT_FIELDS:
            value = self._values.get(name)
            if isinstance(value, str) and value:
                return mask_account(value)
        return ""

    def get(self, name: str) -> Any:
        if name not in self._fields:
            raise AttributeError(f"{self._contract.operation}: {self._path} has no field {name!r}")
        value = self._values.get(name, _ABSENT)
        if value is _ABSENT:
            return [] if self._fields[name].many else None
        if isinstance(value, _Bad):
            c = self._contract
            what = value.reason or f"{value.text[:40]!r} is not a {self._fields[name].type}"
            raise MalformedAnswer(c.service, c.operation, f"{self._path}.{name} {what}{self._account_note()}")
        return value

    def _account_note(self) -> str:
        account = self._account()
        return f" (account {account})" if account else ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.get(name)
        if self._fields[name].required and (value is None or (isinstance(value, str) and not value.strip())):
            c = self._contract
            raise MissingValue(c.service, c.operation, f"{self._path}.{name}", self._account())
        return value

    __getitem__ = __getattr__

    def declares(self, name: str) -> bool:
        """Whether the contract knows a field ``name`` in this element."""
        return name in self._fields

    def has(self, name: str) -> bool:
        """Whether ``name`` came with a value (not nil, not absent)."""
        return self._values.get(name, _ABSENT) is not _ABSENT

    def check(self, *names: str) -> Record:
        """Read ``names`` now (raising as reading them would); returns self."""
        for name in names:
            getattr(self, name)
        return self


def _read(contract: OperationContract, type_name: str, element: etree._Element, path: str) -> Record:
    fields = contract.types.get(type_name, {})
    values: dict[str, Any] = {}
    seen: set[str] = set()
    nil_items = 0
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        f = fields.get(name)
        if f is None:
            _report_once((contract.operation, path, name), "%s %s: unknown element %s in %s ignored",
                         contract.service, contract.operation, name, path)
            continue
        if not f.many:  # one value expected: a second one (even nil) makes the field unreadable
            if name in seen:
                values[name] = _DUPLICATE
                continue
            seen.add(name)
        if child.get(XSI_NIL) in ("true", "1"):
            if f.many:
                nil_items += 1
            continue
        if f.complex:
            if f.many:
                item_path = f"{path}.{name}"
                values.setdefault(name, []).append(_read(contract, f.type, child, item_path))
            else:
                values[name] = _read(contract, f.type, child, f"{path}.{name}")
            continue
        value: Any
        if len(child):  # an element or processing instruction inside a value: .text is only its first part
            value = _Bad("".join(child.itertext()))
        else:
            text = child.text or ""
            if f.type != "string" and not text.strip():
                continue  # <Balance/>: no value received
            try:
                value = CONVERTERS[f.type](text)
            except (ValueError, InvalidOperation, binascii.Error, OverflowError):
                value = _Bad(text)
        if f.many:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    if nil_items:
        _report_once((contract.operation, path, "nil"), "%s %s: null item(s) in %s skipped",
                     contract.service, contract.operation, path)
    return Record(contract, fields, path, values, nil_items)


def read_result(contract: OperationContract, response: etree._Element) -> Record | None:
    """The Result of a ``…Response`` element as a :class:`Record`, or None when the answer has
    no Result (empty, or ``xsi:nil``): the caller judges what an empty answer means."""
    if contract.result is None:
        return None
    results = [c for c in response if isinstance(c.tag, str) and etree.QName(c).localname == contract.result.name]
    if len(results) > 1:
        raise MalformedAnswer(contract.service, contract.operation,
                              f"{contract.result.name} came {len(results)} times (an answer that cannot be judged)")
    if not results:
        return None
    (child,) = results
    if child.get(XSI_NIL) in ("true", "1"):
        return None
    if not contract.result.complex:  # a Result that is a plain value
        raise MalformedAnswer(contract.service, contract.operation, "a plain-value Result is not supported")
    return _read(contract, contract.result.type, child, contract.result.name)


def items(record: Record | None, *path: str) -> Iterator[Record]:
    """The Records of a list under ``record`` (``items(result, "Payments", "Payment")``);
    nothing when any step is absent. Nil items were skipped when read."""
    node: Any = record
    for step in path[:-1]:
        if node is None:
            return iter(())
        node = node.get(step)
    if node is None:
        return iter(())
    return iter(node.get(path[-1]))


def nil_items(record: Record | None, *path: str) -> int:
    """How many nil items the list at ``path`` (as for :func:`items`) had."""
    node: Any = record
    for step in path[:-1]:
        if node is None:
            return 0
        node = node.get(step)
    return 0 if node is None else node.nil_items


def contract_markdown(operations: list[tuple[str, str | Path, str]]) -> str:
    """The answer contract of ``(service, wsdl, operation)`` items as a Markdown table (the
    table in docs/cis-services.md is this function's output; a test keeps them equal)."""
    lines = ["| service | operation | field | type | required | nil or absent means |", "|---|---|---|---|---|---|"]
    for service, wsdl, operation in operations:
        contract = operation_contract(wsdl, operation, service)
        for path, xsd_type, required, nillable in contract.describe():
            if path.endswith("[]") and not required:
                meaning = "nil item skipped and counted"
            elif required:
                meaning = "error (MissingValue) when read"
            elif xsd_type in VALUE_TYPES:
                meaning = "None: not sent (" + ("nillable" if nillable else "optional") + ")"
            elif xsd_type in CONVERTERS:
                meaning = '"" / None: not sent'
            else:
                meaning = "nothing under it"
            lines.append(f"| {service} | {operation} | `{path}` | {xsd_type} | {'yes' if required else 'no'} "
                         f"| {meaning} |")
    return "\n".join(lines) + "\n"
