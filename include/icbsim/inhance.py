"""Harris inHance v2 simulator: ``iCloud.asmx`` over real HTTP, state in SQLite.

Serves the project's own WSDL (soap/wsdl/iCloud.wsdl) on the shared SoapServer, one or more
endpoints per biller, each with its own key (rule 6). Behaviour (assumed where the seed is
silent; docs/cis-services.md):

* A wrong key: ``Success=false``, ``ErrorMessage="Invalid credentials"``; an unknown account:
  ``Success=false``, ``ErrorMessage="Account not found"``; nothing applied.
* BalanceCheck answers the account's Balance, FutureBalance, Phone and Email.
* MakePaymentExtended records the payment and lowers Balance and FutureBalance by the
  amount (not the fee). Every accepted call is recorded, a repeat included, so a test sees
  a duplicate. A non-positive amount is refused ("Invalid request: ...").
* SetPaperless / SetAutopay take "On"/"Off" (case-insensitive; anything else is refused);
  SetEmail takes any non-empty address.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.soap.inhance import WSDL
from icbsim.cis import CODE_INVALID, CisSimulator, Endpoint, Refusal
from icbsim.values import arg_datetime, arg_decimal, arg_int, arg_str, money

__all__ = ["InhanceSimulator"]

_RESULT_FIELDS: dict[str, tuple[tuple[str, Any], ...]] = {
    "BalanceCheck": (
        ("Balance", Decimal(0)),
        ("FutureBalance", Decimal(0)),
        ("Phone", None),
        ("Email", None),
        ("Success", False),
        ("ErrorMessage", None),
    ),
}
_PLAIN = (("Success", False), ("ErrorMessage", None))


def _on_off(args: dict[str, Any], name: str) -> bool:
    text = (arg_str(args, name) or "").strip().lower()
    if text not in ("on", "off"):
        raise Refusal(CODE_INVALID, f"Invalid request: {name} must be On or Off")
    return text == "on"


class InhanceSimulator(CisSimulator):
    """inHance iCloud.asmx for tests and the demo; see the module docstring."""

    WSDL: Path = WSDL
    SERVICE_FILE = "iCloud.asmx"
    KEY_FIELDS = ("WebServiceKey", "WebserviceKey")
    default_base_path = "/inhance"

    def handlers(self) -> Mapping[str, Callable[[Endpoint, dict[str, Any]], Mapping[str, Any]]]:
        return {
            "BalanceCheck": self._balance_check,
            "MakePaymentExtended": self._make_payment,
            "SetPaperless": self._set_paperless,
            "SetAutopay": self._set_autopay,
            "SetEmail": self._set_email,
        }

    def result(self, method: str, code: int, message: str, **values: Any) -> dict[str, Any]:
        values = {"Success": code == 0, "ErrorMessage": message, **values}
        return {name: values.get(name, default) for name, default in _RESULT_FIELDS.get(method, _PLAIN)}

    def _balance_check(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        arg_int(args, "LastInvoiceNumber")  # must be an integer (a fault otherwise, like ASMX)

        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            assert row is not None
            return {
                "Balance": Decimal(row["balance"]),
                "FutureBalance": Decimal(row["future_balance"]),
                "Phone": row["phone"],
                "Email": row["email"],
            }

        return self.serve(endpoint, "BalanceCheck", args, apply)

    def _make_payment(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        when = arg_datetime(args, "PaymentDate")
        amount = money(arg_decimal(args, "PaymentAmount"))
        fee = money(arg_decimal(args, "ConvenienceFee"))

        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            assert row is not None
            if amount <= 0 or fee < 0:
                raise Refusal(CODE_INVALID, "Invalid request: PaymentAmount must be > 0 and ConvenienceFee >= 0")
            self.record_payment(
                db,
                endpoint,
                "MakePaymentExtended",
                account,
                when,
                amount,
                fee,
                (arg_str(args, "PaymentTypeDesc") or "").strip(),
                (arg_str(args, "PaymentReference") or "").strip(),
                (arg_str(args, "DocumentNumber") or "").strip(),
            )
            db.execute(
                "UPDATE accounts SET balance = ?, future_balance = ? WHERE biller = ? AND account_number = ?",
                (
                    str(Decimal(row["balance"]) - amount),
                    str(Decimal(row["future_balance"]) - amount),
                    endpoint.biller,
                    account,
                ),
            )
            return {}

        return self.serve(endpoint, "MakePaymentExtended", args, apply)

    def _flag(self, endpoint: Endpoint, args: dict[str, Any], method: str, arg: str, field: str) -> dict[str, Any]:
        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            self.record_change(db, endpoint, method, account, field, _on_off(args, arg))
            return {}

        return self.serve(endpoint, method, args, apply)

    def _set_paperless(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        return self._flag(endpoint, args, "SetPaperless", "PaperlessOnOff", "paperless")

    def _set_autopay(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        return self._flag(endpoint, args, "SetAutopay", "AutoPayOnOff", "autopay")

    def _set_email(self, endpoint: Endpoint, args: dict[str, Any]) -> dict[str, Any]:
        def apply(db: sqlite3.Connection, row: sqlite3.Row | None, account: str) -> dict[str, Any]:
            email = (arg_str(args, "NewEmail") or "").strip()
            if not email:
                raise Refusal(CODE_INVALID, "Invalid request: NewEmail is required")
            self.record_change(db, endpoint, "SetEmail", account, "email", email)
            return {}

        return self.serve(endpoint, "SetEmail", args, apply)
