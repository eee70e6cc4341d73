"""Harris Advanced (AUS, "CIS Infinity") web service as plain Python (seed 004; fields assumed).

Every AUS result carries ResponseCode (0 = success) and ResponseMessage. The non-zero codes
are this project's assumption, shared with the simulator and docs/cis-services.md:
1 account not found, 2 invalid credentials, 3 invalid request, 4 bill not found, 9 other.

Error model as for inHance: a non-zero ResponseCode is a result with ``ok=False`` (and
``code``); a SOAP fault raises :class:`~icbridge.soap.cis.CisFault`; transport problems
propagate as ``requests`` exceptions. The client takes the same endpoint map as inHance
(``"default"`` plus optional per-method entries, e.g. a separate PdfViewer URL for
RetrieveBillPrintImageV2). Credentials never in repr or exceptions; not picklable.
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
    "ACCOUNT_NOT_FOUND",
    "BILL_NOT_FOUND",
    "INVALID_CREDENTIALS",
    "INVALID_REQUEST",
    "METHODS",
    "OTHER_ERROR",
    "SUCCESS",
    "WSDL",
    "AccountData",
    "AusClient",
    "AusResult",
    "BillImage",
    "LeanAus",
    "PendingPaymentResult",
    "account_data",
]

WSDL = Path(__file__).resolve().parent / "wsdl" / "AusCis.wsdl"
METHODS = (
    "GetAccountData",
    "AddPendingPayment",
    "UpdatePaymentPlan",
    "UpdateCisLinkTableEBillAndLinkRegistration",
    "RetrieveBillPrintImageV2",
)
SERVICE = "aus"

SUCCESS = 0
ACCOUNT_NOT_FOUND = 1
INVALID_CREDENTIALS = 2
INVALID_REQUEST = 3
BILL_NOT_FOUND = 4
OTHER_ERROR = 9


@dataclass(frozen=True)
class AusResult(CisResult):
    """ResponseCode/ResponseMessage; ``ok`` is ``code == 0``."""

    code: int

    @property
    def not_found(self) -> bool:
        return self.code in (ACCOUNT_NOT_FOUND, BILL_NOT_FOUND)

    @property
    def credentials_refused(self) -> bool:
        return self.code == INVALID_CREDENTIALS


@dataclass(frozen=True)
class AccountData(AusResult):
    """GetAccountData (RTDR). Amounts None unless ``ok``. ``cash_only`` blocks CC and ACH (rule 7)."""

    account_number: str
    customer_number: str
    location_number: str
    balance: Decimal | None
    past_due: Decimal | None
    cash_only: bool | None
    email_address: str


@dataclass(frozen=True)
class PendingPaymentResult(AusResult):
    pending_payment_id: str


@dataclass(frozen=True)
class BillImage(AusResult):
    """RetrieveBillPrintImageV2. ``ok`` says what the CIS answered; ``is_pdf`` whether it is a PDF."""

    content: bytes

    @property
    def is_pdf(self) -> bool:
        return self.content.startswith(b"%PDF-")

    def __repr__(self) -> str:  # never dump a whole PDF into a log line
        return f"BillImage(ok={self.ok}, code={self.code}, message={self.message!r}, bytes={len(self.content)})"


def _head(node: Record) -> tuple[bool, str, int]:
    """(ok, message, code): ResponseCode must have come (MissingValue otherwise: never a guess)."""
    code = node.ResponseCode
    return code == SUCCESS, soap_text(node.ResponseMessage), code


def _answered(node: Record | None, method: str) -> Record:
    if node is None:
        raise MalformedAnswer(SERVICE, method, "empty answer (no Result): the outcome is unknown")
    return node


def account_data(node: Record | None) -> AccountData:
    """A GetAccountData Result as the dataclass. Balance, PastDue and CashOnly are read only
    when ResponseCode is 0, and then must have come (MissingValue otherwise: a nil CashOnly
    never unblocks payments)."""
    if node is None:  # an answer that cannot be judged is never a refusal (nor a made-up code)
        raise MalformedAnswer(SERVICE, "GetAccountData", "empty answer (no Result)")
    ok, message, code = _head(node)
    return AccountData(
        ok=ok,
        message=message,
        code=code,
        account_number=soap_text(node.AccountNumber),
        customer_number=soap_text(node.CustomerNumber),
        location_number=soap_text(node.LocationNumber),
        balance=node.Balance if ok else None,
        past_due=node.PastDue if ok else None,
        cash_only=node.CashOnly if ok else None,
        email_address=soap_text(node.EmailAddress).strip(),
    )


class LeanAus(LeanCisMethod):
    """AUS GetAccountData rendered from a template: same answers and errors as
    :meth:`AusClient.get_account_data`, less CPU per call."""

    method = "GetAccountData"

    def get_account_data(self, account_number: str) -> AccountData:
        return account_data(self._operation.call(AccountNumber=account_number))


class AusClient(CisClient):
    """Client for one AUS biller (one endpoint and key, or one per method)."""

    SERVICE = SERVICE
    LABEL = "AUS"
    WSDL = WSDL
    METHODS = METHODS
    HUGE = frozenset({"RetrieveBillPrintImageV2"})

    def _simple(self, node: Record | None, method: str) -> AusResult:
        return AusResult(*_head(_answered(node, method)))

    def get_account_data(self, account_number: str) -> AccountData:
        """GetAccountData (RTDR): balance, past due, cash-only flag and email of one account."""
        return account_data(self._call("GetAccountData", AccountNumber=account_number))

    def lean(self) -> LeanAus:
        """GetAccountData of this client without zeep per call (Balance All at scale: the request from a template)."""
        return LeanAus(self)

    def add_pending_payment(
        self,
        account_number: str,
        payment_date: datetime,
        payment_amount: Decimal | int | str,
        payment_type: str,
        payment_reference: str,
        convenience_fee: Decimal | int | str = 0,
    ) -> PendingPaymentResult:
        """AddPendingPayment (data pump: payments)."""
        node = self._call(
            "AddPendingPayment",
            AccountNumber=account_number,
            PaymentDate=payment_date,
            PaymentAmount=money(payment_amount),
            ConvenienceFee=money(convenience_fee),
            PaymentType=payment_type,
            PaymentReference=payment_reference,
        )
        node = _answered(node, "AddPendingPayment")
        return PendingPaymentResult(*_head(node), pending_payment_id=soap_text(node.PendingPaymentID))

    def update_payment_plan(self, account_number: str, autopay_enrolled: bool) -> AusResult:
        """UpdatePaymentPlan (data pump: autopay)."""
        return self._simple(
            self._call("UpdatePaymentPlan", AccountNumber=account_number, AutoPayEnrolled=bool(autopay_enrolled)),
            "UpdatePaymentPlan",
        )

    def update_ebill_registration(
        self, account_number: str, ebill_enrolled: bool, email_address: str | None = None
    ) -> AusResult:
        """UpdateCisLinkTableEBillAndLinkRegistration (data pump: paperless); no email leaves the CIS's."""
        return self._simple(
            self._call(
                "UpdateCisLinkTableEBillAndLinkRegistration",
                AccountNumber=account_number,
                EBillEnrolled=bool(ebill_enrolled),
                EmailAddress=email_address or None,
            ),
            "UpdateCisLinkTableEBillAndLinkRegistration",
        )

    def retrieve_bill_print_image(self, account_number: str, bill_number: str) -> BillImage:
        """RetrieveBillPrintImageV2: the bill PDF (check ``is_pdf`` before passing it on)."""
        node = _answered(self._call("RetrieveBillPrintImageV2", AccountNumber=account_number, BillNumber=bill_number),
                         "RetrieveBillPrintImageV2")
        ok, message, code = _head(node)
        return BillImage(ok, message, code, node.PdfContent or b"")
