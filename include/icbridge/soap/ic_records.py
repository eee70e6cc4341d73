"""Invoice Cloud's answers as frozen dataclasses with Python types (never zeep objects), and
the parsers from the answer's records (icbridge.soap.contract): an answer that cannot be judged
is MalformedAnswer, never an empty list or a refusal. The client: icbridge.soap.invoice_cloud."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from icbridge.errors import SoapError
from icbridge.soap.client import soap_text
from icbridge.soap.contract import Record, items
from icbridge.soap.errors import MalformedAnswer

__all__ = ["ChangeLogEntry", "CustomerRecord", "Invoice", "InvoiceCloudError", "Listing", "OpenInvoicesPage",
           "OperationResult", "Payment", "UploadResult", "answered_list", "as_listing", "change_entry", "ic_money",
           "invoice", "iter_pages", "open_invoices_page", "operation_result", "payment"]


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


def ic_money(value: Decimal | int | str | float) -> Decimal:
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


def as_listing(nodes: Any, build: Any, nil_items: int = 0) -> Listing:
    built, invalid = [], []
    for node in nodes:
        try:
            built.append(build(node))
        except MalformedAnswer as exc:
            invalid.append(str(exc))
    return Listing(built, invalid, nil_items)


def invoice(node: Record) -> Invoice:
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


def payment(p: Record) -> Payment:
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


def change_entry(c: Record) -> ChangeLogEntry:
    return ChangeLogEntry(
        account_number=c.AccountNumber,
        change_type=c.ChangeType,
        new_value=soap_text(c.NewValue),
        changed_at=c.ChangedAt,
    )


def operation_result(node: Record | None, operation: str) -> OperationResult:
    """Success must have come; an empty answer cannot be judged (MalformedAnswer), never a refusal."""
    if node is None:
        raise MalformedAnswer("invoice_cloud", operation, "empty answer (no Result): the outcome is unknown")
    return OperationResult(node.Success, soap_text(node.ErrorMessage))


def iter_pages(list_page: Any, page_size: int) -> Iterator[Invoice]:
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


def answered_list(node: Record | None, operation: str) -> Record:
    """A list answer must have come: an empty one (no body, no Result, a nil Result) is not an
    empty list — a run that read "nothing" would move its watermark past what IC holds."""
    if node is None:
        raise MalformedAnswer("invoice_cloud", operation, "empty answer (no Result): what IC lists is unknown")
    return node


def open_invoices_page(node: Record | None) -> OpenInvoicesPage:
    node = answered_list(node, "ListOpenInvoices")
    listing = as_listing(items(node, "Invoices", "Invoice"), invoice)
    return OpenInvoicesPage(listing, node.TotalCount, listing.invalid)
