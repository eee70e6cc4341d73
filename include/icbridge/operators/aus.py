"""One thin operator per Harris AUS method: RTDR GetAccountData, the data pump
(AddPendingPayment, UpdatePaymentPlan, UpdateCisLinkTableEBillAndLinkRegistration) and bill
images (RetrieveBillPrintImageV2). Everything shared is in operators/cis_base.py (the call)
and operators/data_pump.py (rules 4 and 5). Catalogue: docs/operators.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from icbridge.config.biller import BillerConfig
from icbridge.errors import FileError
from icbridge.masking import mask_account
from icbridge.operators.cis_base import CisCallOperator, as_bool
from icbridge.operators.common import run_artifacts
from icbridge.operators.data_pump import BASE, PAYMENT_INPUTS, PaymentOperator, data_pump_account, required_text
from icbridge.soap.aus import AccountData, AusClient, BillImage, PendingPaymentResult

__all__ = [
    "AusAddPendingPaymentOperator",
    "AusGetAccountDataOperator",
    "AusRetrieveBillPrintImageOperator",
    "AusUpdateEBillRegistrationOperator",
    "AusUpdatePaymentPlanOperator",
    "NotAPdf",
    "looks_like_pdf",
]

PDF_EOF_WINDOW = 1024  # readers look for %%EOF in the last 1 KiB


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
        return client.get_account_data(required_text(item, "account_number"))

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


class AusAddPendingPaymentOperator(PaymentOperator):
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
        data_pump_account(item)
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
        data_pump_account(item)
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
        item["account_number"] = required_text(item, "account_number")
        item["bill_number"] = required_text(item, "bill_number")
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
