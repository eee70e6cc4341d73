"""`<biller>__balances` (RTDR) without Airflow: the CIS balance of recently active accounts -> IC.

"Active in the interval" (docs/sync-flows.md): an IC account with

* a payment in IC ``ListPayments`` of the interval - its balance moved. If the data pump
  sends that payment (channel not skipped) and our payment ledger does not say ``posted``
  yet, the account is *deferred*: the CIS does not know the payment yet, and writing its
  balance to IC would undo the payment there;
* an entry in IC ``ListChangeLog`` of the interval (when ``sync.balances_from_change_log``):
  the payer was in the portal and will look at the balance.

Invoices uploaded in the interval are not a source: their balance came from the CIS file
minutes ago, and inHance pushes its BIF itself.

Per account: inHance ``BalanceCheck(account, LastInvoiceNumber)`` / AUS ``GetAccountData``,
then IC ``UpdateInvoiceBalance`` (rule 1: version 2 also FutureBalance -> TotalAmountDue),
inHance email -> IC only with ``rtdr_updates_email`` (rule 2; Phone never), AUS CashOnly ->
``UpdateCustomerRecord`` BlockPaymentsCC and BlockPaymentsEFT both (rule 7). The invoice is
the payment's (highest number if several), else the account's latest open IC invoice (one
``ListOpenInvoices`` pass, only when some account needs it).

Rule 3: a business refusal (Success=false, ResponseCode != 0, not found) is recorded and the
run goes on. Transport faults are retried (``sync.attempts``); what still fails is counted.
The run fails only when there was work and *no* CIS call got through (the CIS is down).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from icbridge.calls import CallPolicy, call_all
from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, describe_error, read_retryable
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.soap.invoice_cloud import Invoice, InvoiceCloudClient
from icbridge.state.payments import PaymentLedger

log = logging.getLogger(__name__)

__all__ = ["ActiveAccount", "active_accounts", "run_balances"]


@dataclass
class ActiveAccount:
    account_number: str  # IC's
    invoice_number: str = ""
    reasons: set[str] = field(default_factory=set)  # payment | change
    unposted_payment: str = ""  # a pumped payment of the interval not yet posted to the CIS


def _invoice_key(number: str) -> tuple[int, int | str]:
    return (1, int(number)) if number.isdigit() else (0, number)


def _latest(a: Invoice, b: Invoice | None) -> Invoice:
    """The later of two invoices of one account: by invoice date, then by number."""
    if b is None:
        return a
    return max(a, b, key=lambda i: (i.invoice_date or date.min, _invoice_key(i.invoice_number)))


def active_accounts(
    biller: BillerConfig, ic: InvoiceCloudClient, interval: Interval, ledger: PaymentLedger | None
) -> list[ActiveAccount]:
    """The interval's active accounts, in first-seen order (see the module docstring)."""
    sync = biller.sync_settings()
    skip_channels = {c.strip().lower() for c in sync.payments_skip_channels}
    accounts: dict[str, ActiveAccount] = {}
    payments = ic.list_payments(interval.start, interval.end)
    for problem in payments.invalid:  # an account it would have made active waits for Balance All
        log.warning("IC payment left out (breaks the answer contract): %s", problem)
    pumped = [p for p in payments if p.channel.strip().lower() not in skip_channels]
    statuses = ledger.statuses(biller.biller_id, [p.payment_guid for p in pumped]) if ledger and pumped else {}
    pumped_guids = {p.payment_guid for p in pumped}
    for p in payments:
        acct = accounts.setdefault(p.account_number, ActiveAccount(p.account_number))
        acct.reasons.add("payment")
        if p.invoice_number and (not acct.invoice_number
                                 or _invoice_key(p.invoice_number) > _invoice_key(acct.invoice_number)):
            acct.invoice_number = p.invoice_number
        if p.payment_guid in pumped_guids and statuses.get(p.payment_guid) not in ("posted", "ignored"):
            acct.unposted_payment = p.payment_guid
    if sync.balances_from_change_log:
        for change in ic.list_change_log(interval.start, interval.end):
            accounts.setdefault(change.account_number, ActiveAccount(change.account_number)).reasons.add("change")
    missing = {a.account_number for a in accounts.values() if not a.invoice_number and not a.unposted_payment}
    if missing:
        latest: dict[str, Invoice] = {}
        for invoice in ic.iter_open_invoices():
            if invoice.account_number in missing:
                latest[invoice.account_number] = _latest(invoice, latest.get(invoice.account_number))
        for number, invoice in latest.items():
            accounts[number].invoice_number = invoice.invoice_number
    return list(accounts.values())


class _Step(Exception):  # noqa: N818 - carries which side failed
    def __init__(self, side: str, cause: BaseException) -> None:
        super().__init__(f"{side}: {describe_error(cause)}")
        self.side = side
        self.cause = cause


def _retryable(exc: BaseException) -> bool:
    return read_retryable(exc.cause if isinstance(exc, _Step) else exc)


@dataclass(frozen=True)
class _Done:
    outcome: str  # updated | cis_not_found | cis_refused | ic_refused | no_invoice | invalid
    detail: str = ""
    cis_answered: bool = True


def _checker(biller: BillerConfig, ic: InvoiceCloudClient, cis_client: object):
    cis = biller.cis_service
    assert cis is not None
    version2 = cis.rtdr_version == 2
    update_email = cis.rtdr_updates_email

    def ic_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _Step("ic", exc) from exc

    def cis_call(fn, *args):
        try:
            return fn(*args)
        except ValueError:
            raise
        except Exception as exc:
            raise _Step("cis", exc) from exc

    def refused(result) -> _Done:
        return _Done("cis_not_found" if result.not_found else "cis_refused", result.message)

    def inhance(acct: ActiveAccount) -> _Done:
        if not acct.invoice_number:
            return _Done("no_invoice", "no IC invoice to name as LastInvoiceNumber", cis_answered=False)
        try:
            result = cis_call(cis_client.balance_check, drop_conveyance_suffix(acct.account_number),  # type: ignore[attr-defined]
                              acct.invoice_number)
        except ValueError as exc:
            return _Done("invalid", str(exc), cis_answered=False)
        if not result.ok:
            return refused(result)
        total = result.future_balance if version2 else None  # rule 1
        answer = ic_call(ic.update_invoice_balance, acct.account_number, acct.invoice_number, result.balance, total)
        if not answer.success:
            return _Done("ic_refused", f"UpdateInvoiceBalance: {answer.error_message}")
        if update_email and result.email:  # rule 2; Phone is never used
            answer = ic_call(ic.update_customer_record, acct.account_number, email_address=result.email)
            if not answer.success:
                return _Done("ic_refused", f"UpdateCustomerRecord: {answer.error_message}")
        return _Done("updated")

    def aus(acct: ActiveAccount) -> _Done:
        try:
            data = cis_call(cis_client.get_account_data, drop_conveyance_suffix(acct.account_number))  # type: ignore[attr-defined]
        except ValueError as exc:
            return _Done("invalid", str(exc), cis_answered=False)
        if not data.ok:
            return refused(data)
        # rule 7: CashOnly blocks (or unblocks) both payment types; there is no flag for one alone
        answer = ic_call(ic.update_customer_record, acct.account_number, block_payments_cc=data.cash_only,
                         block_payments_eft=data.cash_only)
        if not answer.success:
            return _Done("ic_refused", f"UpdateCustomerRecord: {answer.error_message}")
        if not acct.invoice_number:
            return _Done("no_invoice", "payment flags updated; no IC invoice for the balance")
        answer = ic_call(ic.update_invoice_balance, acct.account_number, acct.invoice_number, data.balance)
        if not answer.success:
            return _Done("ic_refused", f"UpdateInvoiceBalance: {answer.error_message}")
        return _Done("updated")

    return inhance if biller.cis == "inhance" else aus


def run_balances(
    *,
    biller: BillerConfig,
    ic: InvoiceCloudClient,
    cis_client: object,
    interval: Interval,
    policy: CallPolicy,
    ledger: PaymentLedger | None = None,
    accounts: Iterable[ActiveAccount] | None = None,
) -> SyncReport:
    """RTDR for the interval's active accounts; the report, or :class:`SyncFailed` (retry=True)
    when every CIS call failed on transport. IC list errors propagate (nothing was changed)."""
    report = SyncReport("balances", biller.biller_id, interval)
    found = list(accounts) if accounts is not None else active_accounts(biller, ic, interval, ledger)
    todo = []
    for acct in found:
        if acct.unposted_payment:
            report.add("deferred_payment_not_posted", acct.account_number,
                       "its payment is not posted to the CIS yet; Balance All or its next activity refreshes it",
                       note=True, payment_guid=acct.unposted_payment)
        else:
            todo.append(acct)
    log.info("%s: %d active account(s) in %s, %d to refresh", biller.biller_id, len(found), interval, len(todo))

    cis_answered = cis_failed = 0
    for outcome in call_all(todo, _checker(biller, ic, cis_client), policy, retryable=_retryable):
        acct = outcome.item
        if outcome.ok:
            done = outcome.result
            assert done is not None
            cis_answered += done.cis_answered
            report.add(done.outcome, acct.account_number, done.detail, note=done.outcome != "updated")
        else:
            err = outcome.error
            side = err.side if isinstance(err, _Step) else "cis"
            cause = err.cause if isinstance(err, _Step) else err
            cis_answered += side == "ic"
            cis_failed += side == "cis"
            report.add(f"{side}_error", acct.account_number,
                       f"after {outcome.attempts} tries: {describe_error(cause)}", note=True)  # type: ignore[arg-type]
    if cis_failed and not cis_answered:
        raise SyncFailed(report, f"no CIS call got through ({cis_failed} account(s) failed): the CIS looks down "
                                 f"({report.describe()})", retry=True)
    return report
