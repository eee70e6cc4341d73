"""One thin operator per Invoice Cloud method the flows use (the per-account ones also as a batch).

Same base as the CIS operators (icbridge.operators.cis_base): hook from ``conn_id`` or the
biller's ``ic_conn_id``, one success judgement (``success``/``error_message``; a view that
finds nothing is ``not_found``), masked logs, transport errors retried (every IC method here
is a read or an idempotent setter). The list operators return ``{"count": n, "items": [...]}``,
which an operator takes as its ``items`` directly (one call per item). Catalogue: docs/operators.md.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from icbridge.config.biller import BillerConfig
from icbridge.operators.cis_base import CisCallOperator, as_bool, as_datetime, as_money
from icbridge.soap.invoice_cloud import InvoiceCloudClient

__all__ = [
    "InvoiceCloudListChangeLogOperator",
    "InvoiceCloudListOpenInvoicesOperator",
    "InvoiceCloudListPaymentsOperator",
    "InvoiceCloudUpdateCustomerRecordOperator",
    "InvoiceCloudUpdateInvoiceBalanceOperator",
    "InvoiceCloudViewCustomerRecordOperator",
]

BASE = CisCallOperator.template_fields
CUSTOMER_FIELDS = ("email_address", "phone", "block_payments_cc", "block_payments_eft", "paperless", "auto_pay")
FLAGS = ("block_payments_cc", "block_payments_eft", "paperless", "auto_pay")


class _IcOperator(CisCallOperator):
    service = "invoice_cloud"
    ui_color = "#e8f1fb"


class _IcWindowOperator(_IcOperator):
    """A list over [from_date, to_date): by default the run's data interval."""

    account_field = None
    batchable = False
    from_date: datetime | str | None
    to_date: datetime | str | None

    def __init__(self, *, from_date: datetime | str | None = None, to_date: datetime | str | None = None,
                 inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``from_date``, ``to_date`` (ISO; default: the run's data interval)."""
        super().__init__(inputs={"from_date": from_date, "to_date": to_date, **(inputs or {})}, **kwargs)

    def prepare(self, context: Any, biller: BillerConfig | None) -> None:
        self.from_date = self.from_date or context.get("data_interval_start")
        self.to_date = self.to_date or context.get("data_interval_end")

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        item["from_date"] = as_datetime(item.get("from_date"), "from_date")
        item["to_date"] = as_datetime(item.get("to_date"), "to_date")
        if item["to_date"] <= item["from_date"]:
            raise ValueError(f"to_date {item['to_date']} is not after from_date {item['from_date']}")
        return item

    def summarize(self, item: dict[str, Any], result: list[Any]) -> dict[str, Any]:
        self.log.info("%s %s .. %s: %d item(s)", self.method, item["from_date"], item["to_date"], len(result))
        return {"from_date": item["from_date"], "to_date": item["to_date"], "count": len(result), "items": result}


class InvoiceCloudListPaymentsOperator(_IcWindowOperator):
    """CloudPayments ListPayments: payments with from_date <= PaymentDate < to_date (optionally one channel)."""

    xcom = "count, items (payments)"
    retry = "read"

    method = "ListPayments"
    template_fields = (*BASE, "from_date", "to_date", "channel")
    channel: str | None

    def __init__(self, *, channel: str | None = None, **kwargs: Any) -> None:
        """``from_date``, ``to_date`` as the window; ``channel``: only this IC channel (e.g. CloudPay)."""
        super().__init__(inputs={"channel": channel}, **kwargs)

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> list[Any]:
        return client.list_payments(item["from_date"], item["to_date"], item.get("channel") or None)


class InvoiceCloudListChangeLogOperator(_IcWindowOperator):
    """CloudManagement ListChangeLog: customer changes (Paperless, AutoPay, Email, Phone) in the window."""

    xcom = "count, items (changes)"
    retry = "read"

    method = "ListChangeLog"
    template_fields = (*BASE, "from_date", "to_date")

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> list[Any]:
        return client.list_change_log(item["from_date"], item["to_date"])


class InvoiceCloudListOpenInvoicesOperator(_IcOperator):
    """CloudInvoicing ListOpenInvoices: one page, or every page with ``all_pages=True``."""

    xcom = "total_count, count, items"
    retry = "read"

    method = "ListOpenInvoices"
    account_field = None
    batchable = False
    template_fields = (*BASE, "page_number", "page_size", "all_pages")
    page_number: int | str
    page_size: int | str
    all_pages: bool | str

    def __init__(self, *, page_number: int | str = 1, page_size: int | str = 500, all_pages: bool | str = False,
                 **kwargs: Any) -> None:
        """``page_number`` (from 1), ``page_size``; ``all_pages``: every page, not one."""
        super().__init__(inputs={"page_number": page_number, "page_size": page_size, "all_pages": all_pages},
                         **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        item["page_number"], item["page_size"] = int(item["page_number"]), int(item["page_size"])
        item["all_pages"] = as_bool(item.get("all_pages"), "all_pages")
        if item["page_number"] < 1 or item["page_size"] < 1:
            raise ValueError("page_number and page_size must be at least 1")
        return item

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> tuple[list[Any], int]:
        if item["all_pages"]:
            invoices = list(client.iter_open_invoices(item["page_size"]))
            return invoices, len(invoices)
        page = client.list_open_invoices(item["page_number"], item["page_size"])
        return page.invoices, page.total_count

    def judge(self, result: Any) -> tuple[str, str]:
        return "ok", ""

    def summarize(self, item: dict[str, Any], result: tuple[list[Any], int]) -> dict[str, Any]:
        invoices, total = result
        self.log.info("%s: %d invoice(s) of %d open", self.method, len(invoices), total)
        return {**item, "total_count": total, "count": len(invoices), "items": invoices}


class InvoiceCloudUpdateInvoiceBalanceOperator(_IcOperator):
    """CloudInvoicing UpdateInvoiceBalance: BalanceDue (and TotalAmountDue when given). Idempotent: retried."""

    xcom = "inputs"

    method = "UpdateInvoiceBalance"
    fields = ("account_number", "invoice_number", "balance_due")
    template_fields = (*BASE, *fields, "total_amount_due")
    account_number: str | None
    invoice_number: str | None
    balance_due: str | Decimal | None
    total_amount_due: str | Decimal | None

    def __init__(self, *, account_number: str | None = None, invoice_number: str | None = None,
                 balance_due: str | Decimal | None = None, total_amount_due: str | Decimal | None = None,
                 **kwargs: Any) -> None:
        """``account_number``, ``invoice_number`` (IC's); ``balance_due`` and, when given,
        ``total_amount_due`` (dollars)."""
        super().__init__(inputs={"account_number": account_number, "invoice_number": invoice_number,
                                 "balance_due": balance_due, "total_amount_due": total_amount_due}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        item["balance_due"] = as_money(item.get("balance_due"), "balance_due")
        if item.get("total_amount_due") not in (None, ""):
            item["total_amount_due"] = as_money(item["total_amount_due"], "total_amount_due")
        else:
            item["total_amount_due"] = None
        return item

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> Any:
        return client.update_invoice_balance(
            str(item["account_number"]), str(item["invoice_number"]), item["balance_due"], item["total_amount_due"]
        )


class InvoiceCloudUpdateCustomerRecordOperator(_IcOperator):
    """CloudManagement UpdateCustomerRecord: only the fields given change (None leaves IC's). Idempotent."""

    xcom = "inputs"

    method = "UpdateCustomerRecord"
    fields = ("account_number",)
    template_fields = (*BASE, "account_number", *CUSTOMER_FIELDS)
    account_number: str | None
    email_address: str | None
    phone: str | None
    block_payments_cc: bool | str | None
    block_payments_eft: bool | str | None
    paperless: bool | str | None
    auto_pay: bool | str | None

    def __init__(self, *, account_number: str | None = None, email_address: str | None = None,
                 phone: str | None = None, block_payments_cc: bool | str | None = None,
                 block_payments_eft: bool | str | None = None, paperless: bool | str | None = None,
                 auto_pay: bool | str | None = None, **kwargs: Any) -> None:
        """``account_number`` (IC's), and at least one field to change: ``email_address``,
        ``phone``, ``block_payments_cc``, ``block_payments_eft``, ``paperless``, ``auto_pay``."""
        super().__init__(inputs={
            "account_number": account_number, "email_address": email_address, "phone": phone,
            "block_payments_cc": block_payments_cc, "block_payments_eft": block_payments_eft,
            "paperless": paperless, "auto_pay": auto_pay,
        }, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        for flag in FLAGS:
            if item.get(flag) not in (None, ""):
                item[flag] = as_bool(item[flag], flag)
            else:
                item[flag] = None
        if not any(item.get(name) not in (None, "") for name in CUSTOMER_FIELDS):
            raise ValueError("nothing to update: give at least one of " + ", ".join(CUSTOMER_FIELDS))
        return item

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> Any:
        changes = {name: item.get(name) for name in CUSTOMER_FIELDS}
        return client.update_customer_record(str(item["account_number"]), **changes)


class InvoiceCloudViewCustomerRecordOperator(_IcOperator):
    """CloudManagement ViewCustomerRecord: the record, or ``not_found``. Read: retried."""

    xcom = "record (or status not_found)"
    retry = "read"

    method = "ViewCustomerRecord"
    fields = ("account_number",)
    template_fields = (*BASE, "account_number")
    account_number: str | None

    def __init__(self, *, account_number: str | None = None, **kwargs: Any) -> None:
        """``account_number`` (IC's)."""
        super().__init__(inputs={"account_number": account_number}, **kwargs)

    def invoke(self, client: InvoiceCloudClient, item: dict[str, Any]) -> Any:
        return client.view_customer_record(str(item["account_number"]))

    def summarize(self, item: dict[str, Any], result: Any) -> dict[str, Any]:
        return {"account_number": item["account_number"], "record": result}
