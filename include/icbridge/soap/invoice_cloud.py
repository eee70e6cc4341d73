"""Invoice Cloud web services (CloudInvoicing, CloudManagement, CloudPayments) as plain Python.

Why a wrapper over zeep: callers (operators, flows, tests) get frozen dataclasses with
Python types, never zeep objects; None and "" text are the same; credentials stay inside
this object (not in repr, not in exceptions). No Airflow imports: the hook builds this from
a Connection. Contracts: the WSDLs in ./wsdl (fields marked ASSUMED there are this
project's design, see shared/specs/web-services.md).

Error model (mirrors the simulator and, as far as is known, IC): methods whose result has
Success/ErrorMessage (upload, updates) report a refusal, bad credentials included, as
``success=False``; the view/list methods have no such fields, so IC answers a SOAP fault,
raised here as :class:`InvoiceCloudError`. Transport problems (timeouts, TLS, connection)
propagate as ``requests`` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import zeep.exceptions

from icbridge.soap.client import BoundClient, make_client, soap_text

__all__ = [
    "WSDL_DIR",
    "ChangeLogEntry",
    "CustomerRecord",
    "Invoice",
    "InvoiceCloudClient",
    "InvoiceCloudError",
    "OpenInvoicesPage",
    "OperationResult",
    "Payment",
    "UploadResult",
]

WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
SERVICES = ("CloudInvoicing", "CloudManagement", "CloudPayments")


class InvoiceCloudError(RuntimeError):
    """IC answered a SOAP fault (e.g. invalid credentials on a view/list method)."""

    def __init__(self, operation: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message
        self.code = code


@dataclass(frozen=True)
class OperationResult:
    """Result of an update method: IC accepted it or says why not."""

    success: bool
    error_message: str


@dataclass(frozen=True)
class UploadResult:
    """Result of UploadInvoiceFile (fields assumed, see the WSDL)."""

    success: bool
    error_message: str
    file_id: str
    invoices_accepted: int
    invoices_rejected: int


@dataclass(frozen=True)
class Invoice:
    account_number: str
    invoice_number: str
    invoice_date: date | None
    due_date: date | None
    total_amount_due: Decimal
    balance_due: Decimal
    # the account's payment blocks (ASSUMED fields of the Invoice type, see CloudInvoicing.wsdl);
    # None when IC sends none (no customer record, or an IC without these fields)
    block_payments_cc: bool | None = None
    block_payments_eft: bool | None = None


@dataclass(frozen=True)
class OpenInvoicesPage:
    invoices: list[Invoice]
    total_count: int


@dataclass(frozen=True)
class CustomerRecord:
    account_number: str
    customer_name: str
    email_address: str
    phone: str
    block_payments_cc: bool
    block_payments_eft: bool
    paperless: bool
    auto_pay: bool


@dataclass(frozen=True)
class Payment:
    payment_guid: str
    account_number: str
    invoice_number: str
    payment_date: datetime | None
    payment_amount: Decimal
    convenience_fee: Decimal
    payment_type: str
    channel: str
    cashier_name: str


@dataclass(frozen=True)
class ChangeLogEntry:
    account_number: str
    change_type: str
    new_value: str
    changed_at: datetime | None


def _decimal(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value)


def _date(value: Any) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    return date.fromisoformat(str(value))


def _money(value: Decimal | int | str | float) -> Decimal:
    """Money as Decimal; a float goes through str() so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _member(node: Any, name: str) -> Any:
    """``node.name``, or node itself: zeep unwraps a result type that has a single child element
    (PaymentList -> its ArrayOfPayment), so both shapes must be accepted."""
    if node is None:
        return None
    try:
        return node[name]
    except (KeyError, TypeError, AttributeError):
        return node


def _items(array: Any, item: str) -> list[Any]:
    """Items of an ASMX ArrayOfX: None/absent and empty arrays are both []."""
    if array is None:
        return []
    values = array[item] if not isinstance(array, list) else array
    return [v for v in (values or []) if v is not None]


def _invoice(node: Any) -> Invoice:
    return Invoice(
        account_number=soap_text(node.AccountNumber),
        invoice_number=soap_text(node.InvoiceNumber),
        invoice_date=_date(node.InvoiceDate),
        due_date=_date(node.DueDate),
        total_amount_due=_decimal(node.TotalAmountDue),
        balance_due=_decimal(node.BalanceDue),
        block_payments_cc=_optional_bool(getattr(node, "BlockPaymentsCC", None)),
        block_payments_eft=_optional_bool(getattr(node, "BlockPaymentsEFT", None)),
    )


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _operation_result(node: Any) -> OperationResult:
    if node is None:  # an empty Response: treat as a refusal, never as success
        return OperationResult(False, "empty response")
    return OperationResult(bool(node.Success), soap_text(node.ErrorMessage))


def _iter_pages(list_page: Any, page_size: int) -> Iterator[Invoice]:
    page_number = 1
    while True:
        page = list_page(page_number, page_size)
        yield from page.invoices
        if not page.invoices or page_number * page_size >= page.total_count:
            return
        page_number += 1


_OPEN_INVOICE_FIELDS = {
    "AccountNumber": ("account_number", str),
    "InvoiceNumber": ("invoice_number", str),
    "InvoiceDate": ("invoice_date", lambda text: date.fromisoformat(text.strip()[:10])),
    "DueDate": ("due_date", lambda text: date.fromisoformat(text.strip()[:10])),
    "TotalAmountDue": ("total_amount_due", Decimal),
    "BalanceDue": ("balance_due", Decimal),
    "BlockPaymentsCC": ("block_payments_cc", lambda text: text.strip() in ("true", "1")),
    "BlockPaymentsEFT": ("block_payments_eft", lambda text: text.strip() in ("true", "1")),
}


class LeanOpenInvoices:
    """ListOpenInvoices over :class:`icbridge.soap.lean.LeanOperation` (answers validated against
    the WSDL's schema): the same pages of :class:`Invoice` as the zeep client, a SOAP fault raised
    as :class:`InvoiceCloudError`, transport errors as ``requests`` exceptions."""

    def __init__(self, endpoint: str, biller_guid: str, web_service_key: str, **options: Any) -> None:
        from icbridge.soap.lean import LeanOperation

        self._operation = LeanOperation(
            WSDL_DIR / "CloudInvoicing.wsdl",
            "ListOpenInvoices",
            endpoint,
            {"BillerGUID": biller_guid, "WebServiceKey": web_service_key},
            service="invoice_cloud",
            on_fault=lambda message, code: InvoiceCloudError("ListOpenInvoices", message, code),
            on_http_error=lambda status, body: zeep.exceptions.TransportError(
                f"Server returned HTTP status {status}", status_code=status, content=body
            ),
            **options,
        )
        self._ns = self._operation.result_namespace

    def __repr__(self) -> str:
        return f"LeanOpenInvoices({self._operation!r})"

    def __reduce__(self) -> Any:
        raise TypeError("LeanOpenInvoices holds credentials and cannot be pickled")

    def list_open_invoices(self, page_number: int = 1, page_size: int = 500) -> OpenInvoicesPage:
        result = self._operation.call_element(PageNumber=page_number, PageSize=page_size)
        if result is None:
            return OpenInvoicesPage([], 0)
        ns = "{" + self._ns + "}"
        invoices = []
        for node in result.iterfind(f"{ns}Invoices/{ns}Invoice"):
            if node.get("{http://www.w3.org/2001/XMLSchema-instance}nil") in ("true", "1"):
                continue  # a null item of the array (zeep leaves it out too)
            values: dict[str, Any] = {"account_number": "", "invoice_number": "", "invoice_date": None,
                                      "due_date": None, "total_amount_due": Decimal(0), "balance_due": Decimal(0)}
            for child in node:
                name, convert = _OPEN_INVOICE_FIELDS[child.tag[len(ns):]]
                if child.text is not None and child.get("{http://www.w3.org/2001/XMLSchema-instance}nil") is None:
                    values[name] = convert(child.text)
            invoices.append(Invoice(**values))
        total = result.findtext(f"{ns}TotalCount")
        return OpenInvoicesPage(invoices, int(total or 0))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All)."""
        return _iter_pages(self.list_open_invoices, page_size)

    def close(self) -> None:
        self._operation.close()


class InvoiceCloudClient:
    """Client for one biller's IC web services (one set of credentials, three .asmx endpoints)."""

    def __init__(
        self,
        base_url: str,
        biller_guid: str,
        web_service_key: str,
        *,
        timeout: float = 60,
        ca_file: str | None = None,
        verify: bool = True,
        pool_maxsize: int = 10,
    ) -> None:
        if not base_url or not biller_guid or not web_service_key:
            raise ValueError("base_url, biller_guid and web_service_key are all required")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._biller_guid = biller_guid
        self._key = web_service_key
        self._options = {
            "timeout": timeout,
            "ca_file": ca_file,
            "verify": verify,
            "pool_maxsize": pool_maxsize,
        }

    def __repr__(self) -> str:
        return f"InvoiceCloudClient(base_url={self.base_url!r})"

    def __reduce__(self) -> Any:
        # Pickling would write the key somewhere (XCom, a cache): refuse rather than leak.
        raise TypeError("InvoiceCloudClient holds credentials and cannot be pickled")

    @property
    def biller_guid(self) -> str:
        return self._biller_guid

    def endpoint(self, service: str) -> str:
        """The .asmx URL of one of SERVICES under base_url."""
        if service not in SERVICES:
            raise ValueError(f"unknown IC service {service!r}")
        return f"{self.base_url}/{service}.asmx"

    def soap_client(self, service: str) -> BoundClient:
        """The (cached) hardened zeep client for one IC service."""
        return make_client(WSDL_DIR / f"{service}.wsdl", self.endpoint(service), **self._options)

    def _call(self, service: str, operation: str, **params: Any) -> Any:
        client = self.soap_client(service)
        try:
            return getattr(client.service, operation)(BillerGUID=self._biller_guid, WebServiceKey=self._key, **params)
        except zeep.exceptions.Fault as fault:
            raise InvoiceCloudError(operation, soap_text(fault.message), fault.code) from None

    # CloudInvoicing -------------------------------------------------------------------------

    def upload_invoice_file(self, file_name: str, content: bytes) -> UploadResult:
        """Send one BIF. A refused file is ``success=False`` with IC's message, not an exception."""
        node = self._call("CloudInvoicing", "UploadInvoiceFile", FileName=file_name, FileContent=content)
        if node is None:
            return UploadResult(False, "empty response", "", 0, 0)
        return UploadResult(
            success=bool(node.Success),
            error_message=soap_text(node.ErrorMessage),
            file_id=soap_text(node.FileID),
            invoices_accepted=int(node.InvoicesAccepted or 0),
            invoices_rejected=int(node.InvoicesRejected or 0),
        )

    def view_invoice_by_invoice_number(self, invoice_number: str) -> Invoice | None:
        """One invoice, or None when IC has no invoice with that number."""
        node = self._call("CloudInvoicing", "ViewInvoiceByInvoiceNumber", InvoiceNumber=invoice_number)
        return None if node is None else _invoice(node)

    def list_open_invoices(self, page_number: int = 1, page_size: int = 500) -> OpenInvoicesPage:
        """One page (1-based) of the invoices whose BalanceDue is not 0."""
        node = self._call("CloudInvoicing", "ListOpenInvoices", PageNumber=page_number, PageSize=page_size)
        if node is None:
            return OpenInvoicesPage([], 0)
        return OpenInvoicesPage([_invoice(i) for i in _items(node.Invoices, "Invoice")], int(node.TotalCount or 0))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All)."""
        return _iter_pages(self.list_open_invoices, page_size)

    def lean(self) -> LeanOpenInvoices:
        """ListOpenInvoices without zeep per page (Balance All at scale: 250,000 invoices cost
        ~36 s CPU through zeep, ~4 s this way); same Invoice dataclasses, same errors."""
        return LeanOpenInvoices(self.endpoint("CloudInvoicing"), self._biller_guid, self._key, **self._options)

    def update_invoice_balance(
        self,
        account_number: str,
        invoice_number: str,
        balance_due: Decimal | int | str,
        total_amount_due: Decimal | int | str | None = None,
    ) -> OperationResult:
        """Set an invoice's BalanceDue (and TotalAmountDue when given; None leaves it)."""
        node = self._call(
            "CloudInvoicing",
            "UpdateInvoiceBalance",
            AccountNumber=account_number,
            InvoiceNumber=invoice_number,
            BalanceDue=_money(balance_due),
            TotalAmountDue=None if total_amount_due is None else _money(total_amount_due),
        )
        return _operation_result(node)

    # CloudManagement ------------------------------------------------------------------------

    def view_customer_record(self, account_number: str) -> CustomerRecord | None:
        """The customer record, or None when IC has no such account."""
        node = self._call("CloudManagement", "ViewCustomerRecord", AccountNumber=account_number)
        if node is None:
            return None
        return CustomerRecord(
            account_number=soap_text(node.AccountNumber),
            customer_name=soap_text(node.CustomerName),
            email_address=soap_text(node.EmailAddress),
            phone=soap_text(node.Phone),
            block_payments_cc=bool(node.BlockPaymentsCC),
            block_payments_eft=bool(node.BlockPaymentsEFT),
            paperless=bool(node.Paperless),
            auto_pay=bool(node.AutoPay),
        )

    def update_customer_record(
        self,
        account_number: str,
        *,
        email_address: str | None = None,
        phone: str | None = None,
        block_payments_cc: bool | None = None,
        block_payments_eft: bool | None = None,
        paperless: bool | None = None,
        auto_pay: bool | None = None,
    ) -> OperationResult:
        """Change only the fields given; None leaves a field as IC has it."""
        node = self._call(
            "CloudManagement",
            "UpdateCustomerRecord",
            AccountNumber=account_number,
            EmailAddress=email_address,
            Phone=phone,
            BlockPaymentsCC=block_payments_cc,
            BlockPaymentsEFT=block_payments_eft,
            Paperless=paperless,
            AutoPay=auto_pay,
        )
        return _operation_result(node)

    def list_change_log(self, from_date: datetime, to_date: datetime) -> list[ChangeLogEntry]:
        """Customer changes (Paperless, AutoPay, Email, Phone) with from_date <= ChangedAt < to_date."""
        node = self._call("CloudManagement", "ListChangeLog", FromDate=from_date, ToDate=to_date)
        if node is None:
            return []
        return [
            ChangeLogEntry(
                account_number=soap_text(c.AccountNumber),
                change_type=soap_text(c.ChangeType),
                new_value=soap_text(c.NewValue),
                changed_at=c.ChangedAt,
            )
            for c in _items(_member(node, "Changes"), "ChangeLogEntry")
        ]

    # CloudPayments --------------------------------------------------------------------------

    def list_payments(self, from_date: datetime, to_date: datetime, channel: str | None = None) -> list[Payment]:
        """Payments with from_date <= PaymentDate < to_date, optionally of one channel."""
        node = self._call("CloudPayments", "ListPayments", FromDate=from_date, ToDate=to_date, Channel=channel)
        if node is None:
            return []
        return [
            Payment(
                payment_guid=soap_text(p.PaymentGUID),
                account_number=soap_text(p.AccountNumber),
                invoice_number=soap_text(p.InvoiceNumber),
                payment_date=p.PaymentDate,
                payment_amount=_decimal(p.PaymentAmount),
                convenience_fee=_decimal(p.ConvenienceFee),
                payment_type=soap_text(p.PaymentType),
                channel=soap_text(p.Channel),
                cashier_name=soap_text(p.CashierName),
            )
            for p in _items(_member(node, "Payments"), "Payment")
        ]
