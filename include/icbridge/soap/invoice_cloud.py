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

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.errors import SoapError
from icbridge.soap.client import BoundClient, make_client, soap_text
from icbridge.soap.contract import Record, items
from icbridge.soap.errors import MalformedAnswer
from icbridge.soap.operation import SoapOperation
from icbridge.soap.transport import DEFAULT_MAX_ANSWER_BYTES, HttpTransport

__all__ = [
    "WSDL_DIR",
    "ChangeLogEntry",
    "CustomerRecord",
    "Invoice",
    "InvoiceCloudClient",
    "InvoiceCloudError",
    "Listing",
    "OpenInvoicesPage",
    "OperationResult",
    "Payment",
    "UploadResult",
]

WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
SERVICES = ("CloudInvoicing", "CloudManagement", "CloudPayments")


class InvoiceCloudError(SoapError):
    """IC answered a SOAP fault (1.1 or 1.2, its reason text kept), e.g. invalid credentials."""

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
    invoices_accepted: int | None  # None: IC did not send it (never read as 0)
    invoices_rejected: int | None


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
    invalid: list[str] = field(default_factory=list)  # items left out: see Listing


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


def _money(value: Decimal | int | str | float) -> Decimal:
    """Money as Decimal; a float goes through str() so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Listing(list):
    """The items of a list answer that follow the contract, in IC's order. ``invalid``: one
    line per item that did not (a required value nil or absent, a value of the wrong form),
    naming the field and the masked account; such an item is left out — never passed on with
    a 0 — and the flow fails its run after the rest (docs/cis-services.md). ``nil_items``: null
    entries of the array (skipped)."""

    def __init__(self, values: Any = (), invalid: list[str] | None = None, nil_items: int = 0) -> None:
        super().__init__(values)
        self.invalid = invalid or []
        self.nil_items = nil_items


def _listing(nodes: Any, build: Any, nil_items: int = 0) -> Listing:
    built, invalid = [], []
    for node in nodes:
        try:
            built.append(build(node))
        except MalformedAnswer as exc:
            invalid.append(str(exc))
    return Listing(built, invalid, nil_items)


def _invoice(node: Record) -> Invoice:
    return Invoice(
        account_number=node.AccountNumber,
        invoice_number=node.InvoiceNumber,
        invoice_date=node.InvoiceDate,
        due_date=node.DueDate,
        total_amount_due=node.TotalAmountDue,
        balance_due=node.BalanceDue,
        block_payments_cc=node.BlockPaymentsCC if node.declares("BlockPaymentsCC") else None,
        block_payments_eft=node.BlockPaymentsEFT if node.declares("BlockPaymentsEFT") else None,
    )


def _payment(p: Record) -> Payment:
    return Payment(
        payment_guid=p.PaymentGUID,
        account_number=p.AccountNumber,
        invoice_number=soap_text(p.InvoiceNumber),
        payment_date=p.PaymentDate,
        payment_amount=p.PaymentAmount,
        convenience_fee=p.ConvenienceFee,
        payment_type=soap_text(p.PaymentType),
        channel=soap_text(p.Channel),
        cashier_name=soap_text(p.CashierName),
    )


def _change(c: Record) -> ChangeLogEntry:
    return ChangeLogEntry(
        account_number=c.AccountNumber,
        change_type=c.ChangeType,
        new_value=soap_text(c.NewValue),
        changed_at=c.ChangedAt,
    )


def _operation_result(node: Record | None, operation: str) -> OperationResult:
    """Success must have come; an empty answer cannot be judged (MalformedAnswer), never a refusal."""
    if node is None:
        raise MalformedAnswer("invoice_cloud", operation, "empty answer (no Result): the outcome is unknown")
    return OperationResult(node.Success, soap_text(node.ErrorMessage))


def _iter_pages(list_page: Any, page_size: int) -> Iterator[Invoice]:
    page_number = 1
    while True:
        page = list_page(page_number, page_size)
        if page.invalid:
            raise MalformedAnswer("invoice_cloud", "ListOpenInvoices", f"page {page_number}: {page.invalid[0]}"
                                  + (f" (and {len(page.invalid) - 1} more)" if len(page.invalid) > 1 else ""))
        yield from page.invoices
        if not page.invoices or page_number * page_size >= page.total_count:
            return
        page_number += 1


def _answered_list(node: Record | None, operation: str) -> Record:
    """A list answer must have come: an empty one (no body, no Result, a nil Result) is not an
    empty list — a run that read "nothing" would move its watermark past what IC holds."""
    if node is None:
        raise MalformedAnswer("invoice_cloud", operation, "empty answer (no Result): what IC lists is unknown")
    return node


def _open_invoices_page(node: Record | None) -> OpenInvoicesPage:
    node = _answered_list(node, "ListOpenInvoices")
    listing = _listing(items(node, "Invoices", "Invoice"), _invoice)
    return OpenInvoicesPage(listing, node.TotalCount, listing.invalid)


class LeanOpenInvoices:
    """ListOpenInvoices rendered from a template (Balance All at scale): the same answer path,
    pages and errors as :meth:`InvoiceCloudClient.list_open_invoices`, less CPU per page."""

    def __init__(self, client: InvoiceCloudClient) -> None:
        self._client = client
        self._operation = client.operation("CloudInvoicing", "ListOpenInvoices", template=True)

    def __repr__(self) -> str:
        return f"LeanOpenInvoices({self._operation!r})"

    def __reduce__(self) -> Any:
        raise TypeError("LeanOpenInvoices holds credentials and cannot be pickled")

    def list_open_invoices(self, page_number: int = 1, page_size: int = 500) -> OpenInvoicesPage:
        return _open_invoices_page(self._operation.call(PageNumber=page_number, PageSize=page_size))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All)."""
        return _iter_pages(self.list_open_invoices, page_size)

    def close(self) -> None:
        self._client.close()


class InvoiceCloudClient:
    """Client for one biller's IC web services (one set of credentials, three .asmx endpoints).

    Every method goes through one :class:`~icbridge.soap.operation.SoapOperation` (one answer
    contract, urllib3 transport): a SOAP fault raises :class:`InvoiceCloudError`; an HTTP error
    or redirect :class:`~icbridge.soap.errors.HttpStatusError`; a required value nil or absent
    :class:`~icbridge.soap.errors.MissingValue`; transport failures NotSent / NoAnswer."""

    HUGE = frozenset({"UploadInvoiceFile"})

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
        proxy: str | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        if not base_url or not biller_guid or not web_service_key:
            raise ValueError("base_url, biller_guid and web_service_key are all required")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._biller_guid = biller_guid
        self._key = web_service_key
        self._options: dict[str, Any] = {"timeout": timeout, "ca_file": ca_file, "verify": verify,
                                         "pool_maxsize": pool_maxsize}
        self._transport_options: dict[str, Any] = {**self._options, "proxy": proxy,
                                                   "max_answer_bytes": max_answer_bytes}
        self._transports: dict[str, HttpTransport] = {}
        self._operations: dict[tuple[str, str, bool], SoapOperation] = {}
        self._lock = threading.Lock()

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
        """The (cached) zeep client of one IC service's WSDL (renders requests; never sends)."""
        return make_client(WSDL_DIR / f"{service}.wsdl", self.endpoint(service), **self._options)

    def operation(self, service: str, operation: str, *, template: bool = False) -> SoapOperation:
        """The (cached) call path of one IC operation."""
        with self._lock:
            cached = self._operations.get((service, operation, template))
            if cached is None:
                url = self.endpoint(service)
                transport = self._transports.get(url)
                if transport is None:
                    transport = self._transports[url] = HttpTransport(url, **self._transport_options)
                cached = self._operations[(service, operation, template)] = SoapOperation(
                    self.soap_client(service), operation, transport,
                    {"BillerGUID": self._biller_guid, "WebServiceKey": self._key}, service="invoice_cloud",
                    on_fault=lambda message, code: InvoiceCloudError(operation, message, code),
                    template=template, huge=operation in self.HUGE,
                )
        return cached

    def _call(self, service: str, operation: str, **params: Any) -> Record | None:
        return self.operation(service, operation).call(**params)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            for transport in self._transports.values():
                transport.close()

    # CloudInvoicing -------------------------------------------------------------------------

    def upload_invoice_file(self, file_name: str, content: bytes) -> UploadResult:
        """Send one BIF. A refusal is ``success=False`` with IC's message (a SOAP fault raises
        InvoiceCloudError: also a refusal); an empty answer or one without Success raises
        MalformedAnswer / MissingValue: the outcome is unknown (in doubt), never a refusal."""
        # from a template: zeep renders a 20 MiB part's ~27 MB of base64 in ~0.2 s, the template in ~0.05 s
        operation = self.operation("CloudInvoicing", "UploadInvoiceFile", template=True)
        node = operation.call(FileName=file_name, FileContent=content)
        if node is None:
            raise MalformedAnswer("invoice_cloud", "UploadInvoiceFile", "empty answer (no Result): the outcome "
                                  "is unknown")
        success = node.Success
        return UploadResult(
            success=success,
            error_message=soap_text(node.ErrorMessage),
            file_id=soap_text(node.FileID),
            invoices_accepted=node.InvoicesAccepted if success else node.get("InvoicesAccepted"),
            invoices_rejected=node.get("InvoicesRejected"),  # a count for the log, not a judgement
        )

    def view_invoice_by_invoice_number(self, invoice_number: str) -> Invoice | None:
        """One invoice, or None when IC has no invoice with that number."""
        node = self._call("CloudInvoicing", "ViewInvoiceByInvoiceNumber", InvoiceNumber=invoice_number)
        return None if node is None else _invoice(node)

    def list_open_invoices(self, page_number: int = 1, page_size: int = 500) -> OpenInvoicesPage:
        """One page (1-based) of the invoices whose BalanceDue is not 0 (items that break the
        contract are left out and named in ``invalid``)."""
        return _open_invoices_page(
            self._call("CloudInvoicing", "ListOpenInvoices", PageNumber=page_number, PageSize=page_size))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All); a page with an invalid item raises
        MalformedAnswer (a reconciliation must not silently skip an invoice)."""
        return _iter_pages(self.list_open_invoices, page_size)

    def lean(self) -> LeanOpenInvoices:
        """ListOpenInvoices rendered from a template (Balance All at scale); same pages and errors."""
        return LeanOpenInvoices(self)

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
        return _operation_result(node, "UpdateInvoiceBalance")

    # CloudManagement ------------------------------------------------------------------------

    def view_customer_record(self, account_number: str) -> CustomerRecord | None:
        """The customer record, or None when IC has no such account. The flags must have come."""
        node = self._call("CloudManagement", "ViewCustomerRecord", AccountNumber=account_number)
        if node is None:
            return None
        return CustomerRecord(
            account_number=soap_text(node.AccountNumber),
            customer_name=soap_text(node.CustomerName),
            email_address=soap_text(node.EmailAddress),
            phone=soap_text(node.Phone),
            block_payments_cc=node.BlockPaymentsCC,
            block_payments_eft=node.BlockPaymentsEFT,
            paperless=node.Paperless,
            auto_pay=node.AutoPay,
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
        return _operation_result(node, "UpdateCustomerRecord")

    def list_change_log(self, from_date: datetime, to_date: datetime) -> Listing:
        """Customer changes (Paperless, AutoPay, Email, Phone) with from_date <= ChangedAt < to_date
        (entries that break the contract left out and named in ``invalid``)."""
        node = _answered_list(self._call("CloudManagement", "ListChangeLog", FromDate=from_date, ToDate=to_date),
                              "ListChangeLog")
        return _listing(items(node, "Changes", "ChangeLogEntry"), _change,
                        node.get("Changes").nil_items if node.get("Changes") else 0)

    # CloudPayments --------------------------------------------------------------------------

    def list_payments(self, from_date: datetime, to_date: datetime, channel: str | None = None) -> Listing:
        """Payments with from_date <= PaymentDate < to_date, optionally of one channel (payments
        that break the contract left out and named in ``invalid``: never posted with a 0)."""
        node = _answered_list(self._call("CloudPayments", "ListPayments", FromDate=from_date, ToDate=to_date,
                                         Channel=channel), "ListPayments")
        return _listing(items(node, "Payments", "Payment"), _payment,
                        node.get("Payments").nil_items if node.get("Payments") else 0)
