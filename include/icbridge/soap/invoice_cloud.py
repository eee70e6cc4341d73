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
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.soap.client import BoundClient, make_client, soap_text
from icbridge.soap.contract import Record, items
from icbridge.soap.errors import MalformedAnswer
from icbridge.soap.ic_records import (  # re-exported: the client's answers
    ChangeLogEntry,
    CustomerRecord,
    Invoice,
    InvoiceCloudError,
    Listing,
    OpenInvoicesPage,
    OperationResult,
    Payment,
    UploadResult,
    answered_list,
    as_listing,
    change_entry,
    ic_money,
    invoice,
    iter_pages,
    open_invoices_page,
    operation_result,
    payment,
)
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
        return open_invoices_page(self._operation.call(PageNumber=page_number, PageSize=page_size))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All)."""
        return iter_pages(self.list_open_invoices, page_size)

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
        return None if node is None else invoice(node)

    def list_open_invoices(self, page_number: int = 1, page_size: int = 500) -> OpenInvoicesPage:
        """One page (1-based) of the invoices whose BalanceDue is not 0 (items that break the
        contract are left out and named in ``invalid``)."""
        return open_invoices_page(
            self._call("CloudInvoicing", "ListOpenInvoices", PageNumber=page_number, PageSize=page_size))

    def iter_open_invoices(self, page_size: int = 500) -> Iterator[Invoice]:
        """Every open invoice, page by page (Balance All); a page with an invalid item raises
        MalformedAnswer (a reconciliation must not silently skip an invoice)."""
        return iter_pages(self.list_open_invoices, page_size)

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
            BalanceDue=ic_money(balance_due),
            TotalAmountDue=None if total_amount_due is None else ic_money(total_amount_due),
        )
        return operation_result(node, "UpdateInvoiceBalance")

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
        return operation_result(node, "UpdateCustomerRecord")

    def list_change_log(self, from_date: datetime, to_date: datetime) -> Listing:
        """Customer changes (Paperless, AutoPay, Email, Phone) with from_date <= ChangedAt < to_date
        (entries that break the contract left out and named in ``invalid``)."""
        node = answered_list(self._call("CloudManagement", "ListChangeLog", FromDate=from_date, ToDate=to_date),
                              "ListChangeLog")
        return as_listing(items(node, "Changes", "ChangeLogEntry"), change_entry,
                        node.get("Changes").nil_items if node.get("Changes") else 0)

    # CloudPayments --------------------------------------------------------------------------

    def list_payments(self, from_date: datetime, to_date: datetime, channel: str | None = None) -> Listing:
        """Payments with from_date <= PaymentDate < to_date, optionally of one channel (payments
        that break the contract left out and named in ``invalid``: never posted with a 0)."""
        node = answered_list(self._call("CloudPayments", "ListPayments", FromDate=from_date, ToDate=to_date,
                                         Channel=channel), "ListPayments")
        return as_listing(items(node, "Payments", "Payment"), payment,
                        node.get("Payments").nil_items if node.get("Payments") else 0)
