"""Harris inHance v2 ``iCloud.asmx`` as plain Python (RTDR, payments, paperless, autopay, email).

Why per-method endpoints: each inHance biller gives IC one URL and password per method
(advanced settings 8, 11+13, 14+16, 17+19; seed 001, rule 6), so the client takes a map
method -> :class:`~icbridge.soap.cis.CisEndpoint` with a ``"default"`` entry for the rest.
SetEmail has no setting of its own in the seed: it uses the paperless endpoint (settings
14/16, the other customer-record data pump) unless it is given its own; see
docs/cis-services.md.

Error model: ``Success=false`` (unknown account, bad key, refused value) is a result with
``ok=False``; a SOAP fault raises :class:`~icbridge.soap.cis.CisFault`; transport problems
propagate as ``requests`` exceptions (``requests.Timeout`` for a timeout). Credentials stay
inside (not in repr, not in exceptions, not picklable). No Airflow imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from icbridge.soap.cis import CisClient, CisResult, LeanCisMethod, money
from icbridge.soap.client import soap_text
from icbridge.soap.contract import Record
from icbridge.soap.errors import MalformedAnswer

__all__ = [
    "EMAIL_FALLBACK",
    "METHODS",
    "WSDL",
    "BalanceCheckResult",
    "InhanceClient",
    "InhanceResult",
    "LeanInhance",
    "balance_check_result",
]

WSDL = Path(__file__).resolve().parent / "wsdl" / "iCloud.wsdl"
METHODS = ("BalanceCheck", "MakePaymentExtended", "SetPaperless", "SetAutopay", "SetEmail")
EMAIL_FALLBACK = {"SetEmail": "SetPaperless"}
"""SetEmail without its own endpoint uses SetPaperless's (settings 14/16), then the default."""

SERVICE = "inhance"


@dataclass(frozen=True)
class InhanceResult(CisResult):
    """Success/ErrorMessage of MakePaymentExtended, SetPaperless, SetAutopay, SetEmail."""


@dataclass(frozen=True)
class BalanceCheckResult(CisResult):
    """BalanceCheck (RTDR). Amounts are None unless ``ok``; phone/email "" when absent."""

    balance: Decimal | None
    future_balance: Decimal | None
    phone: str
    email: str


def _invoice_int(value: int | str) -> int:
    """LastInvoiceNumber as inHance takes it (xs:int); ValueError for anything else."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"LastInvoiceNumber must be an integer, got {value!r}") from None


def balance_check_result(node: Record | None) -> BalanceCheckResult:
    """A BalanceCheck Result as the dataclass. Balance and FutureBalance are read only when
    ``Success`` is true, and then must have come (MissingValue otherwise: never a 0)."""
    if node is None:  # an answer that cannot be judged is never a refusal
        raise MalformedAnswer(SERVICE, "BalanceCheck", "empty answer (no Result)")
    ok = node.Success
    return BalanceCheckResult(
        ok=ok,
        message=soap_text(node.ErrorMessage),
        balance=node.Balance if ok else None,
        future_balance=node.FutureBalance if ok else None,
        phone=soap_text(node.Phone).strip(),
        email=soap_text(node.Email).strip(),
    )


def money_result(node: Record | None, service: str, method: str) -> InhanceResult:
    """The answer of a call that moves money or changes a record: ``Success`` must have come
    (MissingValue otherwise); an empty answer cannot be judged (MalformedAnswer: in doubt)."""
    if node is None:
        raise MalformedAnswer(service, method, "empty answer (no Result): the outcome is unknown")
    return InhanceResult(node.Success, soap_text(node.ErrorMessage))


class LeanInhance(LeanCisMethod):
    """inHance BalanceCheck rendered from a template: same answers and errors as
    :meth:`InhanceClient.balance_check`, less CPU per call."""

    method = "BalanceCheck"

    def balance_check(self, account_number: str, last_invoice_number: int | str) -> BalanceCheckResult:
        number = _invoice_int(last_invoice_number)
        return balance_check_result(self._operation.call(AccountNumber=account_number, LastInvoiceNumber=number))


def _on_off(value: bool) -> str:
    return "On" if value else "Off"


class InhanceClient(CisClient):
    """Client for one inHance biller: each method posts to its own endpoint with its own key."""

    SERVICE = SERVICE
    LABEL = "inHance"
    WSDL = WSDL
    METHODS = METHODS
    FALLBACKS = EMAIL_FALLBACK

    def _result(self, method: str, node: Record | None) -> InhanceResult:
        return money_result(node, SERVICE, method)

    # RTDR -----------------------------------------------------------------------------------

    def balance_check(self, account_number: str, last_invoice_number: int | str) -> BalanceCheckResult:
        """BalanceCheck: the CIS balance (-> IC BalanceDue), future balance (-> TotalAmountDue in
        RTDR version 2), phone (ignored by RTDR) and email (used only if the biller says so).

        ``last_invoice_number`` must be an integer (the seed's type); ValueError otherwise.
        """
        number = _invoice_int(last_invoice_number)
        node = self._call("BalanceCheck", "WebServiceKey", AccountNumber=account_number, LastInvoiceNumber=number)
        return balance_check_result(node)

    def lean(self) -> LeanInhance:
        """The BalanceCheck of this client without zeep per call (Balance All at scale: the request from a template)."""
        return LeanInhance(self)

    # data pump ------------------------------------------------------------------------------

    def make_payment_extended(
        self,
        account_number: str,
        payment_date: datetime,
        payment_reference: str,
        document_number: str,
        payment_type_desc: str,
        payment_amount: Decimal | int | str,
        convenience_fee: Decimal | int | str = 0,
    ) -> InhanceResult:
        """Post one payment. The caller maps PayPal to the biller's setting 116 (rule 5) and strips
        a conveyance suffix (rule 4); this method sends what it is given."""
        node = self._call(
            "MakePaymentExtended",
            "WebserviceKey",
            AccountNumber=account_number,
            PaymentDate=payment_date,
            PaymentReference=payment_reference,
            DocumentNumber=document_number,
            PaymentTypeDesc=payment_type_desc,
            PaymentAmount=money(payment_amount),
            ConvenienceFee=money(convenience_fee),
        )
        return self._result("MakePaymentExtended", node)

    def set_paperless(self, account_number: str, paperless: bool) -> InhanceResult:
        """SetPaperless with PaperlessOnOff "On"/"Off"."""
        node = self._call(
            "SetPaperless", "WebserviceKey", Accountnumber=account_number, PaperlessOnOff=_on_off(paperless)
        )
        return self._result("SetPaperless", node)

    def set_autopay(self, account_number: str, autopay: bool) -> InhanceResult:
        """SetAutopay with AutoPayOnOff "On"/"Off"."""
        node = self._call("SetAutopay", "WebserviceKey", Accountnumber=account_number, AutoPayOnOff=_on_off(autopay))
        return self._result("SetAutopay", node)

    def set_email(self, account_number: str, new_email: str) -> InhanceResult:
        """SetEmail (posts to the SetEmail endpoint, else the paperless one, else the default)."""
        node = self._call("SetEmail", "WebserviceKey", Accountnumber=account_number, NewEmail=new_email)
        return self._result("SetEmail", node)
