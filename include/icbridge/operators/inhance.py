"""One thin operator per Harris inHance method (iCloud.asmx): RTDR BalanceCheck and the data
pump (MakePaymentExtended, SetPaperless, SetAutopay, SetEmail). Everything shared is in
operators/cis_base.py (the call) and operators/data_pump.py (rules 4 and 5). Catalogue:
docs/operators.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

from icbridge.operators.cis_base import CisCallOperator, as_bool
from icbridge.operators.data_pump import BASE, PAYMENT_INPUTS, PaymentOperator, data_pump_account, required_text
from icbridge.soap.inhance import BalanceCheckResult, InhanceClient

__all__ = [
    "InhanceBalanceCheckOperator",
    "InhanceMakePaymentExtendedOperator",
    "InhanceSetAutopayOperator",
    "InhanceSetEmailOperator",
    "InhanceSetPaperlessOperator",
]


class InhanceBalanceCheckOperator(CisCallOperator):
    """inHance BalanceCheck (RTDR): balance, future balance, phone, email of one account. Read: retried."""

    xcom = "account_number, balance, future_balance, phone, email"
    retry = "read"

    service, method = "inhance", "BalanceCheck"
    fields = ("account_number", "last_invoice_number")
    template_fields = (*BASE, *fields)
    account_number: str | None
    last_invoice_number: int | str | None

    def __init__(self, *, account_number: str | None = None, last_invoice_number: int | str | None = None,
                 **kwargs: Any) -> None:
        """``account_number``: the CIS account; ``last_invoice_number``: its latest IC invoice (an integer)."""
        super().__init__(inputs={"account_number": account_number, "last_invoice_number": last_invoice_number},
                         **kwargs)

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> BalanceCheckResult:
        return client.balance_check(required_text(item, "account_number"), required_text(item, "last_invoice_number"))

    def summarize(self, item: dict[str, Any], result: BalanceCheckResult) -> dict[str, Any]:
        return {
            "account_number": item["account_number"],
            "last_invoice_number": item.get("last_invoice_number"),
            "balance": result.balance,
            "future_balance": result.future_balance,
            "phone": result.phone,
            "email": result.email,
        }


class InhanceMakePaymentExtendedOperator(PaymentOperator):
    """inHance MakePaymentExtended: post one IC payment. Moves money: tried once, never retried."""

    xcom = "the inputs as sent + ic_account_number, ic_payment_type"

    service, method = "inhance", "MakePaymentExtended"
    template_fields = (*BASE, *PAYMENT_INPUTS, "document_number")
    document_number: str

    def __init__(self, *, document_number: str = "", **kwargs: Any) -> None:
        """The payment inputs, and ``document_number``: the invoice paid (DocumentNumber)."""
        super().__init__(inputs={"document_number": document_number}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        item = self._payment(item)
        item["document_number"] = str(item.get("document_number") or "")
        return item

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> Any:
        return client.make_payment_extended(
            item["account_number"],
            item["payment_date"],
            item["payment_reference"],
            item["document_number"],
            item["payment_type"],
            item["payment_amount"],
            item["convenience_fee"],
        )


class _InhanceFlagOperator(CisCallOperator):
    """SetPaperless / SetAutopay: idempotent setters (retried on transport errors)."""

    service = "inhance"
    flag: ClassVar[str]
    account_number: str | None

    def __init__(self, *, account_number: str | None = None, value: bool | str | None = None, **kwargs: Any) -> None:
        super().__init__(inputs={"account_number": account_number, self.flag: value}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        data_pump_account(item)
        item[self.flag] = as_bool(item.get(self.flag), self.flag)
        return item


class InhanceSetPaperlessOperator(_InhanceFlagOperator):
    """inHance SetPaperless ("On"/"Off")."""

    xcom = "inputs"

    method, flag = "SetPaperless", "paperless"
    fields = ("account_number", "paperless")
    template_fields = (*BASE, *fields)
    paperless: bool | str | None

    def __init__(self, *, account_number: str | None = None, paperless: bool | str | None = None,
                 **kwargs: Any) -> None:
        """``account_number``: the IC account (rule 4); ``paperless``: on (true) or off."""
        super().__init__(account_number=account_number, value=paperless, **kwargs)

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> Any:
        return client.set_paperless(item["account_number"], item["paperless"])


class InhanceSetAutopayOperator(_InhanceFlagOperator):
    """inHance SetAutopay ("On"/"Off")."""

    xcom = "inputs"

    method, flag = "SetAutopay", "autopay"
    fields = ("account_number", "autopay")
    template_fields = (*BASE, *fields)
    autopay: bool | str | None

    def __init__(self, *, account_number: str | None = None, autopay: bool | str | None = None,
                 **kwargs: Any) -> None:
        """``account_number``: the IC account (rule 4); ``autopay``: on (true) or off."""
        super().__init__(account_number=account_number, value=autopay, **kwargs)

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> Any:
        return client.set_autopay(item["account_number"], item["autopay"])


class InhanceSetEmailOperator(CisCallOperator):
    """inHance SetEmail. An empty email is refused here (it would blank the CIS's)."""

    xcom = "inputs"

    service, method = "inhance", "SetEmail"
    fields = ("account_number", "new_email")
    template_fields = (*BASE, *fields)
    account_number: str | None
    new_email: str | None

    def __init__(self, *, account_number: str | None = None, new_email: str | None = None, **kwargs: Any) -> None:
        """``account_number``: the IC account (rule 4); ``new_email``: not empty."""
        super().__init__(inputs={"account_number": account_number, "new_email": new_email}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        data_pump_account(item)
        item["new_email"] = required_text(item, "new_email")
        return item

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> Any:
        return client.set_email(item["account_number"], item["new_email"])
