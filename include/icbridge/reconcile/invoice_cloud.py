"""IC's side of Balance All over :class:`~icbridge.soap.invoice_cloud.InvoiceCloudClient`.

Thin adapters so the engine stays testable alone: the open invoices as accounts (with the
account's payment blocks when ListOpenInvoices carries them, the ASSUMED OpenInvoice fields),
the AUS payment flags from the customer record (only for an account whose invoice came without
them), and the two corrections.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from icbridge.reconcile.compare import IcAccount, IcFlags
from icbridge.reconcile.engine import group_accounts, prefetch
from icbridge.soap.invoice_cloud import InvoiceCloudClient, LeanOpenInvoices


def ic_accounts(
    client: InvoiceCloudClient | LeanOpenInvoices, page_size: int = 500, prefetch_depth: int = 2000
) -> Iterator[IcAccount]:
    """Every account with an open invoice, its latest invoice first-class (see group_accounts);
    the next pages are fetched in the background while the current accounts are checked."""
    return group_accounts(prefetch(client.iter_open_invoices(page_size), prefetch_depth))


class InvoiceCloudSide:
    """:class:`~icbridge.reconcile.engine.IcSide` over one biller's IC client."""

    def __init__(self, client: InvoiceCloudClient) -> None:
        self.client = client

    def flags(self, account_number: str) -> IcFlags | None:
        record = self.client.view_customer_record(account_number)
        if record is None:
            return None
        return IcFlags(record.block_payments_cc, record.block_payments_eft)

    def update_invoice_balance(
        self, account_number: str, invoice_number: str, balance_due: Decimal, total_amount_due: Decimal | None
    ) -> tuple[bool, str]:
        result = self.client.update_invoice_balance(account_number, invoice_number, balance_due, total_amount_due)
        return result.success, result.error_message

    def update_flags(self, account_number: str, block_cc: bool, block_eft: bool) -> tuple[bool, str]:
        result = self.client.update_customer_record(
            account_number, block_payments_cc=block_cc, block_payments_eft=block_eft
        )
        return result.success, result.error_message
