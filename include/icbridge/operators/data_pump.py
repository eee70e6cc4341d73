"""What the data-pump operators of every CIS vendor share (operators/inhance.py, aus.py):
the IC account without its conveyance suffix (rule 4) and the payment inputs (rule 5:
PayPal as the biller's setting 116). Shared/specs/web-services.md.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from icbridge.config.biller import BillerConfig
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.mapping.payments import DEFAULT_PAYPAL_PAYMENT_TYPE, cis_payment_type
from icbridge.operators.cis_base import CisCallOperator, as_datetime, as_money

__all__ = ["BASE", "PAYMENT_INPUTS", "PaymentOperator", "data_pump_account", "required_text"]

BASE = CisCallOperator.template_fields
PAYMENT_INPUTS = ("account_number", "payment_date", "payment_amount", "payment_type", "payment_reference",
                  "payment_guid", "convenience_fee", "paypal_payment_type")


def required_text(item: dict[str, Any], name: str) -> str:
    value = str(item.get(name) or "").strip()
    if not value:
        raise ValueError(f"{name} is required")
    return value


def data_pump_account(item: dict[str, Any]) -> None:
    """Rule 4: the IC account number without its conveyance suffix; the IC one kept when different."""
    ic_account = required_text(item, "account_number")
    cis_account = drop_conveyance_suffix(ic_account)
    item["account_number"] = cis_account
    if cis_account != ic_account:
        item["ic_account_number"] = ic_account


class PaymentOperator(CisCallOperator):
    """Shared inputs and handling of the two payment methods (rules 4 and 5). Moves money:
    tried once, never retried (its task gets ``retries=0``)."""

    moves_money = True
    ui_color = "#fbe9e7"
    fields = ("account_number", "payment_date", "payment_amount", "payment_type")
    paypal_default: str = DEFAULT_PAYPAL_PAYMENT_TYPE
    account_number: str | None
    payment_date: str | datetime | None
    payment_amount: str | Decimal | None
    payment_type: str | None
    payment_reference: str | None
    payment_guid: str | None
    convenience_fee: str | Decimal
    paypal_payment_type: str | None

    def __init__(
        self,
        *,
        account_number: str | None = None,
        payment_date: str | datetime | None = None,
        payment_amount: str | Decimal | None = None,
        payment_type: str | None = None,
        payment_reference: str | None = None,
        payment_guid: str | None = None,
        convenience_fee: str | Decimal = "0",
        paypal_payment_type: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """``account_number``: the IC account (rule 4 drops a conveyance suffix);
        ``payment_date`` (ISO), ``payment_amount``, ``convenience_fee`` (dollars);
        ``payment_type``: IC's (rule 5 maps PayPal); ``payment_reference``, else ``payment_guid``
        (IC's PaymentGUID): the reference the biller matches; ``paypal_payment_type``: overrides
        the biller's setting 116."""
        super().__init__(inputs={
            "account_number": account_number, "payment_date": payment_date, "payment_amount": payment_amount,
            "payment_type": payment_type, "payment_reference": payment_reference, "payment_guid": payment_guid,
            "convenience_fee": convenience_fee, "paypal_payment_type": paypal_payment_type, **(inputs or {}),
        }, **kwargs)

    def prepare(self, context: Any, biller: BillerConfig | None) -> None:
        if biller is not None and biller.cis_service is not None:
            self.paypal_default = biller.cis_service.paypal_payment_type

    def _payment(self, item: dict[str, Any]) -> dict[str, Any]:
        data_pump_account(item)
        item["payment_date"] = as_datetime(item.get("payment_date"), "payment_date")
        item["payment_amount"] = as_money(item.get("payment_amount"), "payment_amount")
        item["convenience_fee"] = as_money(item.get("convenience_fee") or 0, "convenience_fee")
        item["ic_payment_type"] = required_text(item, "payment_type")
        item["payment_type"] = cis_payment_type(
            item["ic_payment_type"], item.get("paypal_payment_type") or self.paypal_default
        )
        # IC's PaymentGUID is the natural reference (ListPayments items carry it)
        item["payment_reference"] = str(item.get("payment_reference") or item.get("payment_guid") or "").strip()
        if not item["payment_reference"]:
            raise ValueError("payment_reference (or payment_guid) is required")
        return item
