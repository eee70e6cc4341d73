"""One thin operator per Harris CIS method (inHance iCloud.asmx, AUS), and their batch forms.

Everything shared (hook, success judgement, masking, retries, batch bounds) is in
:mod:`icbridge.operators.cis_base`; a class here names the method, its inputs and what to
keep of the answer. Data-pump operators (payments, paperless, autopay, email) take IC
account numbers and drop a conveyance suffix (rule 4); payment operators take the IC
payment type and send PayPal as the biller's PayPal type (rule 5). Catalogue:
docs/operators.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from icbridge.config.biller import BillerConfig
from icbridge.errors import FileError
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.mapping.payments import DEFAULT_PAYPAL_PAYMENT_TYPE, cis_payment_type
from icbridge.masking import mask_account
from icbridge.operators.cis_base import CisCallOperator, as_bool, as_datetime, as_money
from icbridge.operators.common import run_artifacts
from icbridge.soap.aus import AccountData, AusClient, BillImage, PendingPaymentResult
from icbridge.soap.inhance import BalanceCheckResult, InhanceClient

__all__ = [
    "AusAddPendingPaymentOperator",
    "AusGetAccountDataOperator",
    "AusRetrieveBillPrintImageOperator",
    "AusUpdateEBillRegistrationOperator",
    "AusUpdatePaymentPlanOperator",
    "InhanceBalanceCheckOperator",
    "InhanceMakePaymentExtendedOperator",
    "InhanceSetAutopayOperator",
    "InhanceSetEmailOperator",
    "InhanceSetPaperlessOperator",
    "NotAPdf",
    "looks_like_pdf",
]

BASE = CisCallOperator.template_fields
PAYMENT_INPUTS = ("account_number", "payment_date", "payment_amount", "payment_type", "payment_reference",
                  "payment_guid", "convenience_fee", "paypal_payment_type")
PDF_EOF_WINDOW = 1024  # readers look for %%EOF in the last 1 KiB


def _required_text(item: dict[str, Any], name: str) -> str:
    value = str(item.get(name) or "").strip()
    if not value:
        raise ValueError(f"{name} is required")
    return value


def _data_pump_account(item: dict[str, Any]) -> None:
    """Rule 4: the IC account number without its conveyance suffix; the IC one kept when different."""
    ic_account = _required_text(item, "account_number")
    cis_account = drop_conveyance_suffix(ic_account)
    item["account_number"] = cis_account
    if cis_account != ic_account:
        item["ic_account_number"] = ic_account


class _PaymentOperator(CisCallOperator):
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
        _data_pump_account(item)
        item["payment_date"] = as_datetime(item.get("payment_date"), "payment_date")
        item["payment_amount"] = as_money(item.get("payment_amount"), "payment_amount")
        item["convenience_fee"] = as_money(item.get("convenience_fee") or 0, "convenience_fee")
        item["ic_payment_type"] = _required_text(item, "payment_type")
        item["payment_type"] = cis_payment_type(
            item["ic_payment_type"], item.get("paypal_payment_type") or self.paypal_default
        )
        # IC's PaymentGUID is the natural reference (ListPayments items carry it)
        item["payment_reference"] = str(item.get("payment_reference") or item.get("payment_guid") or "").strip()
        if not item["payment_reference"]:
            raise ValueError("payment_reference (or payment_guid) is required")
        return item


# inHance ------------------------------------------------------------------------------------


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
        return client.balance_check(_required_text(item, "account_number"), _required_text(item, "last_invoice_number"))

    def summarize(self, item: dict[str, Any], result: BalanceCheckResult) -> dict[str, Any]:
        return {
            "account_number": item["account_number"],
            "last_invoice_number": item.get("last_invoice_number"),
            "balance": result.balance,
            "future_balance": result.future_balance,
            "phone": result.phone,
            "email": result.email,
        }


class InhanceMakePaymentExtendedOperator(_PaymentOperator):
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
        _data_pump_account(item)
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
        _data_pump_account(item)
        item["new_email"] = _required_text(item, "new_email")
        return item

    def invoke(self, client: InhanceClient, item: dict[str, Any]) -> Any:
        return client.set_email(item["account_number"], item["new_email"])


# AUS ----------------------------------------------------------------------------------------


class AusGetAccountDataOperator(CisCallOperator):
    """AUS GetAccountData (RTDR): balance, past due, cash-only, email. Read: retried."""

    xcom = "code, customer_number, location_number, balance, past_due, cash_only, email_address"
    retry = "read"

    service, method = "aus", "GetAccountData"
    fields = ("account_number",)
    template_fields = (*BASE, *fields)
    account_number: str | None

    def __init__(self, *, account_number: str | None = None, **kwargs: Any) -> None:
        """``account_number``: the CIS account."""
        super().__init__(inputs={"account_number": account_number}, **kwargs)

    def invoke(self, client: AusClient, item: dict[str, Any]) -> AccountData:
        return client.get_account_data(_required_text(item, "account_number"))

    def summarize(self, item: dict[str, Any], result: AccountData) -> dict[str, Any]:
        return {
            "account_number": item["account_number"],
            "code": result.code,
            "customer_number": result.customer_number,
            "location_number": result.location_number,
            "balance": result.balance,
            "past_due": result.past_due,
            "cash_only": result.cash_only,
            "email_address": result.email_address,
        }


class AusAddPendingPaymentOperator(_PaymentOperator):
    """AUS AddPendingPayment: post one IC payment. Moves money: tried once, never retried."""

    xcom = "inputs + code, pending_payment_id"

    service, method = "aus", "AddPendingPayment"
    template_fields = (*BASE, *PAYMENT_INPUTS)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        return self._payment(item)

    def invoke(self, client: AusClient, item: dict[str, Any]) -> PendingPaymentResult:
        return client.add_pending_payment(
            item["account_number"],
            item["payment_date"],
            item["payment_amount"],
            item["payment_type"],
            item["payment_reference"],
            item["convenience_fee"],
        )

    def summarize(self, item: dict[str, Any], result: PendingPaymentResult) -> dict[str, Any]:
        return {**super().summarize(item, result), "code": result.code, "pending_payment_id": result.pending_payment_id}


class AusUpdatePaymentPlanOperator(CisCallOperator):
    """AUS UpdatePaymentPlan (autopay enrolment). Idempotent setter: retried."""

    xcom = "inputs"

    service, method = "aus", "UpdatePaymentPlan"
    fields = ("account_number", "autopay_enrolled")
    template_fields = (*BASE, *fields)
    account_number: str | None
    autopay_enrolled: bool | str | None

    def __init__(self, *, account_number: str | None = None, autopay_enrolled: bool | str | None = None,
                 **kwargs: Any) -> None:
        """``account_number``: the IC account (rule 4); ``autopay_enrolled``: true or false."""
        super().__init__(inputs={"account_number": account_number, "autopay_enrolled": autopay_enrolled}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        _data_pump_account(item)
        item["autopay_enrolled"] = as_bool(item.get("autopay_enrolled"), "autopay_enrolled")
        return item

    def invoke(self, client: AusClient, item: dict[str, Any]) -> Any:
        return client.update_payment_plan(item["account_number"], item["autopay_enrolled"])


class AusUpdateEBillRegistrationOperator(CisCallOperator):
    """AUS UpdateCisLinkTableEBillAndLinkRegistration (paperless; email optional, none keeps the CIS's)."""

    xcom = "inputs"

    service, method = "aus", "UpdateCisLinkTableEBillAndLinkRegistration"
    fields = ("account_number", "ebill_enrolled")
    template_fields = (*BASE, *fields, "email_address")
    account_number: str | None
    ebill_enrolled: bool | str | None
    email_address: str | None

    def __init__(self, *, account_number: str | None = None, ebill_enrolled: bool | str | None = None,
                 email_address: str | None = None, **kwargs: Any) -> None:
        """``account_number``: the IC account (rule 4); ``ebill_enrolled``: true or false;
        ``email_address``: none keeps the CIS's."""
        super().__init__(inputs={"account_number": account_number, "ebill_enrolled": ebill_enrolled,
                                 "email_address": email_address}, **kwargs)

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        _data_pump_account(item)
        item["ebill_enrolled"] = as_bool(item.get("ebill_enrolled"), "ebill_enrolled")
        item["email_address"] = str(item.get("email_address") or "").strip() or None
        return item

    def invoke(self, client: AusClient, item: dict[str, Any]) -> Any:
        return client.update_ebill_registration(item["account_number"], item["ebill_enrolled"], item["email_address"])


# bill images (section 7) ----------------------------------------------------------------------


class NotAPdf(FileError, ValueError):
    """The CIS answered success but the payload is not a PDF (nothing is written)."""


def looks_like_pdf(content: bytes) -> bool:
    """A PDF starts with ``%PDF-`` and has ``%%EOF`` in its last KiB (a truncated one does not)."""
    return content.startswith(b"%PDF-") and b"%%EOF" in content[-PDF_EOF_WINDOW:]


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".") or "_"


def write_atomically(path: Path, content: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AusRetrieveBillPrintImageOperator(CisCallOperator):
    """AUS RetrieveBillPrintImageV2: store the bill PDF as ``<destination>/<account>_<bill>.pdf``.

    ``destination`` (templated) defaults to ``$ICBRIDGE_ARTIFACTS_DIR/<dag>/<run>/bills``. A payload
    that is not a PDF is refused (status ``invalid``), naming the masked account and the bill;
    nothing is written. Read: retried on transport errors.
    """

    xcom = "path, bytes, sha256, code"
    retry = "read"

    service, method = "aus", "RetrieveBillPrintImageV2"
    fields = ("account_number", "bill_number")
    template_fields = (*BASE, *fields, "destination")
    account_number: str | None
    bill_number: str | None
    destination: str | None

    def __init__(self, *, account_number: str | None = None, bill_number: str | None = None,
                 destination: str | None = None, **kwargs: Any) -> None:
        """``account_number``: the CIS account; ``bill_number``: the bill; ``destination``: the
        folder the PDF goes to (default: the run's artifacts)."""
        super().__init__(inputs={"account_number": account_number, "bill_number": bill_number,
                                 "destination": destination}, **kwargs)

    def prepare(self, context: Any, biller: BillerConfig | None) -> None:
        if not self.destination:
            self.destination = str(run_artifacts(self.dag_id, context["run_id"]) / "bills")

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        item["account_number"] = _required_text(item, "account_number")
        item["bill_number"] = _required_text(item, "bill_number")
        item["destination"] = str(item.get("destination") or self.destination)
        return item

    def invoke(self, client: AusClient, item: dict[str, Any]) -> tuple[BillImage, Path | None]:
        image = client.retrieve_bill_print_image(item["account_number"], item["bill_number"])
        if not image.ok:
            return image, None
        if not looks_like_pdf(image.content):
            raise NotAPdf(
                f"bill {item['bill_number']} of account {mask_account(item['account_number'])}: the CIS answered "
                f"{len(image.content)} bytes that are not a PDF (no %PDF- header or %%EOF trailer); nothing stored"
            )
        name = f"{_file_part(item['account_number'])}_{_file_part(item['bill_number'])}.pdf"
        path = Path(item["destination"]) / name
        write_atomically(path, image.content)
        return image, path

    def judge(self, result: tuple[BillImage, Path | None]) -> tuple[str, str]:
        return super().judge(result[0])

    def summarize(self, item: dict[str, Any], result: tuple[BillImage, Path | None]) -> dict[str, Any]:
        image, path = result
        return {
            "account_number": item["account_number"],
            "bill_number": item["bill_number"],
            "code": image.code,
            "path": str(path) if path else None,
            "bytes": len(image.content) if path else 0,
            "sha256": hashlib.sha256(image.content).hexdigest() if path else None,
        }
