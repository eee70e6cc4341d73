"""The Balance All engine: IC accounts in, one :class:`Item` per account out, in bounded memory.

Why it looks like this:

* **Streaming.** IC's open invoices arrive page by page (``iter_open_invoices``); a
  background thread fetches the next pages while the current ones are checked, and the main
  thread keeps at most ``window`` accounts in flight. Results are handed to ``on_item`` in
  IC order, one by one; the engine itself keeps only the :class:`Summary` counters. So
  memory does not grow with the number of accounts (250,000 in one run).
* **Concurrency bounds per biller.** ``max_in_flight`` worker threads (so at most that many
  CIS calls in flight) and a shared :class:`RateLimiter` (calls per second, retries
  included; icbridge.calls.RateLimiter): the CIS is the customer's production system.
* **Retries only where they can help.** Timeouts and transport faults (``OSError``, which
  covers ``requests``' connection errors and timeouts, and :class:`LookupTransient`) are retried
  with exponential backoff; a business "not found" (:class:`LookupNotFound`) or refusal
  (:class:`LookupRefused`, a SOAP fault) is not.
* **The CIS is pluggable.** ``cis_lookup(account_number, invoice_number) -> CisAccount`` is a
  plain callable, so the engine is tested without any network and a leaner client than zeep
  can replace the default one for the 250,000-account scale (docs/balance-all.md).

No Airflow imports.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from icbridge.calls import RateLimiter
from icbridge.errors import FlowError, SoapError
from icbridge.masking import mask_account
from icbridge.reconcile.compare import (
    OUTCOMES,
    CisAccount,
    IcAccount,
    IcFlags,
    Item,
    Outcome,
    Rules,
    before_after,
    compare,
    error_item,
    plan_correction,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


# errors a CIS lookup raises -------------------------------------------------------------------


class LookupNotFound(SoapError):  # noqa: N818 - a business answer, not a failure
    """The CIS does not know the account (business answer: not retried; `missing_in_cis`)."""

    retry = False


class LookupRefused(SoapError):  # noqa: N818
    """The CIS answered but refused: ``Success = false``, non-zero ``ResponseCode``, SOAP fault.
    Not retried; `cis_error` with the message."""

    retry = False


class LookupTransient(SoapError):
    """A failure worth retrying (timeout, connection, HTTP 5xx) that is not an ``OSError``."""


class IcUnavailable(SoapError):
    """IC itself failed (after retries) while the run needed it: the run stops, it cannot be judged."""


class IcOrderError(FlowError):
    """ListOpenInvoices did not list the invoices of an account together (the contract asks it to)."""


TRANSIENT: tuple[type[BaseException], ...] = (LookupTransient, OSError)

CisLookup = Callable[[str, str], CisAccount]


class IcSide(Protocol):
    """What the engine asks of IC besides the open invoices (flags for AUS, corrections)."""

    def flags(self, account_number: str) -> IcFlags | None: ...

    def update_invoice_balance(
        self, account_number: str, invoice_number: str, balance_due: Decimal, total_amount_due: Decimal | None
    ) -> tuple[bool, str]: ...

    def update_flags(self, account_number: str, block_cc: bool, block_eft: bool) -> tuple[bool, str]: ...


# settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Per-biller bounds on the CIS: calls in flight, calls per second (0 = no bound), retries."""

    max_in_flight: int = 16
    calls_per_second: float = 0.0
    attempts: int = 3
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.attempts < 1 or self.calls_per_second < 0:
            raise ValueError("max_in_flight and attempts must be >= 1, calls_per_second >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): 1x, 2x, 4x … capped."""
        return min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Settings:
    rules: Rules = Rules()
    limits: Limits = Limits()
    corrections_allowed: bool = False
    dry_run: bool = False


# the counters a run keeps ---------------------------------------------------------------------


@dataclass
class Summary:
    accounts_checked: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    sum_abs_difference: Decimal = Decimal("0.00")
    net_difference: Decimal = Decimal("0.00")
    corrections_made: int = 0
    corrections_failed: int = 0

    def add(self, item: Item) -> None:
        self.accounts_checked += 1
        self.counts[item.outcome] += 1
        own = item.own_difference  # a total-due mismatch counts with its own difference, never as 0.00
        if own is not None:
            self.sum_abs_difference += abs(own)
            self.net_difference += own
        if item.corrected:
            self.corrections_made += 1
        elif item.correction_error:
            self.corrections_failed += 1

    def error_rate_pct(self) -> float:
        if not self.accounts_checked:
            return 0.0
        return 100.0 * self.counts[Outcome.CIS_ERROR] / self.accounts_checked

    def threshold_exceeded(self, threshold_pct: float) -> bool:
        """True when `cis_error` is above ``threshold_pct`` % of the accounts checked."""
        return self.error_rate_pct() > threshold_pct


# building blocks ------------------------------------------------------------------------------


def with_retries(
    call: Callable[[], T],
    limits: Limits,
    *,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, again after a backoff when it raises a transient error, ``limits.attempts``
    times in all; the last transient error propagates, any other error at once."""
    attempt = 1
    while True:
        if limiter is not None:
            limiter.acquire()
        try:
            return call()
        except TRANSIENT:
            if attempt >= limits.attempts:
                raise
            sleep(limits.backoff(attempt))
            attempt += 1


def _invoice_key(invoice: Any) -> tuple[date, int, str]:
    number = str(invoice.invoice_number)
    return (invoice.invoice_date or date.min, int(number) if number.isdigit() else -1, number)


def group_accounts(invoices: Iterable[Any]) -> Iterator[IcAccount]:
    """IC open invoices (ordered by account, as ListOpenInvoices lists them) -> one IcAccount
    per account, carrying its latest invoice (by invoice date, then number): a utility bill
    carries the balance forward, so the latest invoice's BalanceDue is the account's balance.

    Raises :class:`IcOrderError` when an account comes back after another one (the order the
    contract promises is what keeps this in constant memory).
    """
    current: list[Any] = []
    previous_account: str | None = None
    for invoice in invoices:
        account = str(invoice.account_number)
        if current and account != previous_account:
            yield _account(current)
            if account < previous_account:  # type: ignore[operator]
                raise IcOrderError(
                    f"ListOpenInvoices is not ordered by AccountNumber: {mask_account(account)} after "
                    f"{mask_account(previous_account)}"
                )
            current = []
        current.append(invoice)
        previous_account = account
    if current:
        yield _account(current)


def _account(invoices: list[Any]) -> IcAccount:
    latest = max(invoices, key=_invoice_key)
    return IcAccount(
        account_number=str(latest.account_number),
        invoice_number=str(latest.invoice_number),
        balance_due=latest.balance_due,
        total_amount_due=latest.total_amount_due,
        open_invoices=len(invoices),
        block_payments_cc=getattr(latest, "block_payments_cc", None),
        block_payments_eft=getattr(latest, "block_payments_eft", None),
    )


_DONE = object()


def prefetch(source: Iterable[T], depth: int = 2000) -> Iterator[T]:
    """Iterate ``source`` in a background thread, at most ``depth`` items ahead, so IC paging
    overlaps the CIS calls. Errors of the source are raised here, in order."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for element in source:
                while not stop.is_set():
                    try:
                        buffer.put(element, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="balance-all-ic-pages", daemon=True)
    thread.start()
    try:
        while True:
            element = buffer.get()
            if element is _DONE:
                return
            if isinstance(element, BaseException):
                raise element
            yield element
    finally:
        stop.set()
        thread.join(timeout=5)


# the run --------------------------------------------------------------------------------------


class Reconciler:
    """Checks accounts against the CIS and corrects IC where the settings allow it."""

    def __init__(
        self,
        cis_lookup: CisLookup,
        ic: IcSide | None,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (settings.rules.cash_only or settings.corrections_allowed) and ic is None:
            raise ValueError("comparing flags or correcting needs the IC side")
        self.cis_lookup = cis_lookup
        self.ic = ic
        self.settings = settings
        rate = settings.limits.calls_per_second
        self.limiter = RateLimiter(rate) if rate else None
        self._sleep = sleep

    def _ic_call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return with_retries(call, self.settings.limits, sleep=self._sleep)
        except TRANSIENT as exc:
            raise IcUnavailable(f"IC {what} failed after {self.settings.limits.attempts} attempts: {exc}") from exc

    def check(self, account: IcAccount) -> Item:
        """One account: ask the CIS, compare, correct (unless dry run). Never raises for a CIS
        problem (that is an outcome); raises :class:`IcUnavailable` when IC fails."""
        limits = self.settings.limits
        try:
            cis = with_retries(
                lambda: self.cis_lookup(account.account_number, account.invoice_number),
                limits,
                limiter=self.limiter,
                sleep=self._sleep,
            )
        except LookupNotFound as exc:
            return error_item(account, Outcome.MISSING_IN_CIS, str(exc) or "account not found in the CIS")
        except TRANSIENT as exc:
            return error_item(
                account, Outcome.CIS_ERROR, f"{type(exc).__name__}: {exc} (after {limits.attempts} attempts)"
            )
        except LookupRefused as exc:
            return error_item(account, Outcome.CIS_ERROR, str(exc) or "refused by the CIS")
        except Exception as exc:  # faults, malformed answers: recorded, the run goes on
            return error_item(account, Outcome.CIS_ERROR, f"{type(exc).__name__}: {exc}")
        flags = None
        if self.settings.rules.cash_only and self.ic is not None:
            # the blocks ListOpenInvoices sent with the invoice; else one ViewCustomerRecord
            flags = account.flags or self._ic_call(
                "ViewCustomerRecord",
                lambda: self.ic.flags(account.account_number),  # type: ignore[union-attr]
            )
        item = compare(account, cis, self.settings.rules, flags)
        if item.is_mismatch and self.settings.corrections_allowed:
            self._correct(item)
        return item

    def _correct(self, item: Item) -> None:
        correction = plan_correction(item, self.settings.rules)
        if correction is None:
            return
        item.before, item.after = before_after(item, correction)
        if self.settings.dry_run:
            item.message += "; dry run: not corrected"
            return
        ic = self.ic
        assert ic is not None
        problems = []
        balance_due = correction.balance_due
        if correction.balance and balance_due is not None:  # a balance correction always names BalanceDue
            ok, message = self._ic_call(
                "UpdateInvoiceBalance",
                lambda: ic.update_invoice_balance(
                    item.account_number, item.invoice_number, balance_due, correction.total_amount_due
                ),
            )
            if not ok:
                problems.append(f"UpdateInvoiceBalance: {message}")
        if correction.flags:
            ok, message = self._ic_call(
                "UpdateCustomerRecord",
                lambda: ic.update_flags(
                    item.account_number, bool(correction.block_payments_cc), bool(correction.block_payments_eft)
                ),
            )
            if not ok:
                problems.append(f"UpdateCustomerRecord: {message}")
        if problems:
            item.correction_error = "; ".join(problems)
            item.message += "; correction failed: " + item.correction_error
        else:
            item.corrected = True
            item.message += "; corrected in IC"

    def run(
        self,
        accounts: Iterable[IcAccount],
        on_item: Callable[[Item], None],
        *,
        window: int | None = None,
        progress_every: int = 10_000,
        summary: Summary | None = None,
    ) -> Summary:
        """Check every account; ``on_item`` gets each result in IC order (matches included:
        the caller decides what to keep). Returns the counters (``summary``, filled as results
        arrive, so a caller sees what was counted when the run stops half-way)."""
        summary = summary if summary is not None else Summary()
        workers = self.settings.limits.max_in_flight
        window = window or workers * 4
        pending: deque[Future[Item]] = deque()

        def deliver(future: Future[Item]) -> None:
            item = future.result()
            summary.add(item)
            on_item(item)
            if progress_every and summary.accounts_checked % progress_every == 0:
                log.info("Balance All: %d accounts checked so far", summary.accounts_checked)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="balance-all") as pool:
            try:
                for account in accounts:
                    pending.append(pool.submit(self.check, account))
                    while len(pending) >= window:
                        deliver(pending.popleft())
                while pending:
                    deliver(pending.popleft())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return summary
