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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from icbridge.calls import CallPolicy, call_all
from icbridge.config.biller import BillerConfig
from icbridge.flows.customer_changes import change_key, list_change_log
from icbridge.flows.payments import list_payments
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, describe_error, read_retryable
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.soap.invoice_cloud import Invoice, InvoiceCloudClient
from icbridge.state.payments import PaymentLedger
from icbridge.state.watermarks import DoneItem, SyncItems, item_key
from icbridge.vendors import CisService

log = logging.getLogger(__name__)

__all__ = ["FLOW", "ActiveAccount", "active_accounts", "run_balances"]

FLOW = "balances"
T = TypeVar("T")


@dataclass
class ActiveAccount:
    account_number: str  # IC's
    invoice_number: str = ""
    reasons: set[str] = field(default_factory=set)  # payment | change
    unposted_payment: str = ""  # a pumped payment of the interval not yet posted to the CIS
    # the activity that made it active and is not handled yet: icb_sync_items key -> PaymentDate/ChangedAt
    activity: dict[str, datetime | None] = field(default_factory=dict)
    already_done: bool = False  # every activity of it was handled by an earlier run


def _invoice_key(number: str) -> tuple[int, int | str]:
    return (1, int(number)) if number.isdigit() else (0, number)


def _latest(a: Invoice, b: Invoice | None) -> Invoice:
    """The later of two invoices of one account: by invoice date, then by number."""
    if b is None:
        return a
    return max(a, b, key=lambda i: (i.invoice_date or date.min, _invoice_key(i.invoice_number)))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def active_accounts(
    biller: BillerConfig,
    ic: InvoiceCloudClient,
    interval: Interval,
    ledger: PaymentLedger | None,
    *,
    windows: Sequence[Interval] | None = None,
    items: SyncItems | None = None,
) -> list[ActiveAccount]:
    """The interval's active accounts, in first-seen order (see the module docstring), read
    in ``windows`` when given. With ``items``, an account whose every activity (payment,
    change) was handled by an earlier run is ``already_done`` (and needs no invoice look-up)."""
    sync = biller.sync_settings()
    skip_channels = {c.strip().lower() for c in sync.payments_skip_channels}
    accounts: dict[str, ActiveAccount] = {}
    windows = windows or (interval,)
    payments = list_payments(ic, windows)
    for problem in payments.invalid:  # an account it would have made active waits for Balance All
        log.warning("IC payment left out (breaks the answer contract): %s", problem)
    pumped = [p for p in payments if p.channel.strip().lower() not in skip_channels]
    statuses = ledger.statuses(biller.biller_id, [p.payment_guid for p in pumped]) if ledger and pumped else {}
    pumped_guids = {p.payment_guid for p in pumped}
    for p in payments:
        acct = accounts.setdefault(p.account_number, ActiveAccount(p.account_number))
        acct.reasons.add("payment")
        acct.activity[item_key("payment", p.payment_guid)] = _utc(p.payment_date)
        if p.invoice_number and (not acct.invoice_number
                                 or _invoice_key(p.invoice_number) > _invoice_key(acct.invoice_number)):
            acct.invoice_number = p.invoice_number
        if p.payment_guid in pumped_guids and statuses.get(p.payment_guid) not in ("posted", "ignored"):
            acct.unposted_payment = p.payment_guid
    if sync.balances_from_change_log:
        for change in list_change_log(ic, windows):
            acct = accounts.setdefault(change.account_number, ActiveAccount(change.account_number))
            acct.reasons.add("change")
            acct.activity[item_key("change", change_key(change))] = _utc(change.changed_at)
    if items is not None:
        done = items.done(biller.biller_id, FLOW, [k for a in accounts.values() for k in a.activity])
        for acct in accounts.values():
            acct.activity = {k: t for k, t in acct.activity.items() if k not in done}
            acct.already_done = not acct.activity
    missing = {a.account_number for a in accounts.values()
               if not a.invoice_number and not a.unposted_payment and not a.already_done}
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


def _checker(biller: BillerConfig, ic: InvoiceCloudClient, cis: CisService) -> Callable[[ActiveAccount], _Done]:
    settings = biller.cis_service
    assert settings is not None
    version2 = settings.rtdr_version == 2
    update_email = settings.rtdr_updates_email
    needs_invoice = biller.vendor().balance_needs_invoice

    def ic_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _Step("ic", exc) from exc

    def refresh(acct: ActiveAccount) -> _Done:
        if needs_invoice and not acct.invoice_number:  # inHance's BalanceCheck names the invoice
            return _Done("no_invoice", "no IC invoice to name as LastInvoiceNumber", cis_answered=False)
        try:
            reading = cis.read_balance(drop_conveyance_suffix(acct.account_number), acct.invoice_number or None)
        except ValueError as exc:
            return _Done("invalid", str(exc), cis_answered=False)
        except Exception as exc:
            raise _Step("cis", exc) from exc
        answer = reading.answer
        if not answer.ok:
            return _Done("cis_not_found" if answer.not_found else "cis_refused", answer.message)
        if reading.cash_only is not None:
            # rule 7 (AUS): CashOnly blocks (or unblocks) both payment types; there is no flag for one alone
            result = ic_call(ic.update_customer_record, acct.account_number, block_payments_cc=reading.cash_only,
                             block_payments_eft=reading.cash_only)
            if not result.success:
                return _Done("ic_refused", f"UpdateCustomerRecord: {result.error_message}")
        if not acct.invoice_number:
            return _Done("no_invoice", "payment flags updated; no IC invoice for the balance")
        total = reading.future_balance if version2 else None  # rule 1
        result = ic_call(ic.update_invoice_balance, acct.account_number, acct.invoice_number, reading.balance, total)
        if not result.success:
            return _Done("ic_refused", f"UpdateInvoiceBalance: {result.error_message}")
        if update_email and reading.email:  # rule 2; Phone is never used
            result = ic_call(ic.update_customer_record, acct.account_number, email_address=reading.email)
            if not result.success:
                return _Done("ic_refused", f"UpdateCustomerRecord: {result.error_message}")
        return _Done("updated")

    return refresh


def run_balances(
    *,
    biller: BillerConfig,
    ic: InvoiceCloudClient,
    cis: CisService,
    interval: Interval,
    policy: CallPolicy,
    ledger: PaymentLedger | None = None,
    accounts: Iterable[ActiveAccount] | None = None,
    windows: Sequence[Interval] | None = None,
    items: SyncItems | None = None,
    run_id: str | None = None,
) -> SyncReport:
    """RTDR for the interval's active accounts; the report, or :class:`SyncFailed` (retry=True)
    when every CIS call failed on transport. IC list errors propagate (nothing was changed).

    With ``items`` (watermarked runs, flows/windows.py) an account is refreshed once per
    activity: the payments and changes of a refreshed account are recorded, and an account
    active only through recorded ones is not asked again. A deferred account or one whose
    calls failed on transport keeps its activity open: ``report.done_through`` is then the
    time of its earliest open activity, so the watermark waits and a later run refreshes it."""
    report = SyncReport("balances", biller.biller_id, interval)
    found = (list(accounts) if accounts is not None
             else active_accounts(biller, ic, interval, ledger, windows=windows, items=items))
    todo = []
    held: list[ActiveAccount] = []
    for acct in found:
        if acct.already_done:
            report.add("already_refreshed", acct.account_number)
        elif acct.unposted_payment:
            report.add("deferred_payment_not_posted", acct.account_number,
                       "its payment is not posted to the CIS yet; a later run refreshes it (Balance All too)",
                       note=True, payment_guid=acct.unposted_payment)
            held.append(acct)
        else:
            todo.append(acct)
    log.info("%s: %d active account(s) in %s, %d to refresh", biller.biller_id, len(found), interval, len(todo))

    cis_answered = cis_failed = 0
    finished: list[ActiveAccount] = []
    for outcome in call_all(todo, _checker(biller, ic, cis), policy, retryable=_retryable):
        acct = outcome.item
        if outcome.ok:
            done = outcome.value
            cis_answered += done.cis_answered
            report.add(done.outcome, acct.account_number, done.detail, note=done.outcome != "updated")
            finished.append(acct)
        else:
            held.append(acct)
            err = outcome.failure
            side = err.side if isinstance(err, _Step) else "cis"
            cause = err.cause if isinstance(err, _Step) else err
            cis_answered += side == "ic"
            cis_failed += side == "cis"
            report.add(f"{side}_error", acct.account_number,
                       f"after {outcome.attempts} tries: {describe_error(cause)}", note=True)
    if items is not None:
        items.mark_done(biller.biller_id, FLOW, [
            DoneItem(key, a.account_number, "activity", when, "refreshed")
            for a in finished for key, when in a.activity.items()], run_id)
    open_times = [t for a in held for t in a.activity.values()]
    known_times = [t for t in open_times if t is not None]
    if held:
        report.done_through = min(known_times) if known_times and len(known_times) == len(open_times) \
            else interval.start
    if cis_failed and not cis_answered:
        raise SyncFailed(report, f"no CIS call got through ({cis_failed} account(s) failed): the CIS looks down "
                                 f"({report.describe()})", retry=True)
    return report
