"""The CIS side of Balance All: inHance ``BalanceCheck`` and AUS ``GetAccountData`` as a
:data:`~icbridge.reconcile.engine.CisLookup`, with the engine's error classes.

The mapping of answers (web-services.md, docs/cis-services.md):

* accepted -> :class:`CisAccount` (inHance: Balance, FutureBalance; AUS: Balance, CashOnly);
* the CIS does not know the account (inHance "… not found", AUS ResponseCode 1) ->
  :class:`LookupNotFound` (`missing_in_cis`, not retried);
* any other ``Success = false`` / non-zero ``ResponseCode``, or a SOAP fault -> :class:`LookupRefused`
  (`cis_error` with the message, not retried);
* an HTTP error without a SOAP body (IIS 500/503 page) -> :class:`LookupTransient` (retried), like
  the ``requests`` timeouts and connection errors, which pass through as ``OSError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from icbridge.reconcile.compare import CisAccount
from icbridge.reconcile.engine import CisLookup, LookupNotFound, LookupRefused, LookupTransient
from icbridge.soap.aus import AusClient, LeanAus
from icbridge.soap.cis import CisFault
from icbridge.soap.errors import HttpStatusError
from icbridge.soap.inhance import InhanceClient, LeanInhance

T = TypeVar("T")


def _call(call: Callable[[], T]) -> T:
    try:
        return call()
    except HttpStatusError as exc:
        if exc.retryable:  # 5xx, 408, 429: worth another try
            raise LookupTransient(str(exc)) from exc
        raise  # a 3xx/4xx: cis_error with its status, not a refusal
    except CisFault as exc:
        raise LookupRefused(f"SOAP fault: {exc.message}") from exc


def inhance_lookup(client: InhanceClient | LeanInhance) -> CisLookup:
    """BalanceCheck(AccountNumber, LastInvoiceNumber) of the account's latest IC invoice
    (the client or its ``.lean()`` template path: one answer path, tests/integration/soap/test_cis_fastpath.py)."""

    def lookup(account_number: str, invoice_number: str) -> CisAccount:
        try:
            result = _call(lambda: client.balance_check(account_number, invoice_number))
        except ValueError as exc:  # IC invoice number that is not an integer: inHance cannot be asked
            raise LookupRefused(str(exc)) from exc
        if result.ok:
            return CisAccount(balance=result.balance, future_balance=result.future_balance)  # type: ignore[arg-type]
        if result.not_found:
            raise LookupNotFound(result.message or "account not found")
        raise LookupRefused(f"Success=false: {result.message}")

    return lookup


def aus_lookup(client: AusClient | LeanAus) -> CisLookup:
    """GetAccountData(AccountNumber): Balance and CashOnly (the client or its ``.lean()`` template path)."""

    def lookup(account_number: str, invoice_number: str) -> CisAccount:
        data = _call(lambda: client.get_account_data(account_number))
        if data.ok:
            return CisAccount(balance=data.balance, cash_only=data.cash_only)  # type: ignore[arg-type]
        if data.not_found:
            raise LookupNotFound(data.message or "account not found")
        raise LookupRefused(f"ResponseCode {data.code}: {data.message}")

    return lookup
