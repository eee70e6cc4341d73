"""One account, IC side against CIS side, to the cent: the outcome and the correction it needs.

Why a module of its own: the rules (balance, inHance "version 2" FutureBalance, AUS CashOnly
= both IC payment blocks, rule 7) are the contract analysts read; they are pure functions
here, tested without any network.

Sign convention: ``difference = IC − CIS`` (positive: IC asks the customer for more than the
CIS says is owed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

CENT = Decimal("0.01")


def cents(value: Decimal | int | str | float) -> Decimal:
    """Money rounded to the cent (half up); a float goes through str() so 0.1 stays 0.1."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


class Outcome(StrEnum):
    MATCH = "match"
    BALANCE_MISMATCH = "balance_mismatch"
    TOTAL_MISMATCH = "total_mismatch"  # inHance version 2: the balance agrees, the total due does not
    FLAGS_MISMATCH = "flags_mismatch"
    MISSING_IN_CIS = "missing_in_cis"
    CIS_ERROR = "cis_error"


OUTCOMES = tuple(Outcome)
MISMATCHES = (Outcome.BALANCE_MISMATCH, Outcome.TOTAL_MISMATCH, Outcome.FLAGS_MISMATCH)
"""The outcomes that are a difference between IC and the CIS (not a CIS problem)."""
OUTCOME_LABELS: dict[str, str] = {  # by Outcome (a StrEnum: its members are the str keys)
    Outcome.MATCH: "Matches",
    Outcome.BALANCE_MISMATCH: "Balance mismatches",
    Outcome.TOTAL_MISMATCH: "Total-due mismatches",
    Outcome.FLAGS_MISMATCH: "Payment-block mismatches",
    Outcome.MISSING_IN_CIS: "Missing in the CIS",
    Outcome.CIS_ERROR: "CIS errors",
}
"""What people read for each outcome (pages, XLSX summary); the code names stay in URLs and data."""


@dataclass(frozen=True)
class IcAccount:
    """IC's side of one account: its latest open invoice (the one the CIS balance is compared with)."""

    account_number: str
    invoice_number: str
    balance_due: Decimal
    total_amount_due: Decimal
    open_invoices: int = 1
    # the account's payment blocks when ListOpenInvoices carries them (ASSUMED contract fields),
    # so AUS needs no ViewCustomerRecord per account; None: not sent, ask the customer record
    block_payments_cc: bool | None = None
    block_payments_eft: bool | None = None

    @property
    def flags(self) -> IcFlags | None:
        if self.block_payments_cc is None or self.block_payments_eft is None:
            return None
        return IcFlags(self.block_payments_cc, self.block_payments_eft)


@dataclass(frozen=True)
class IcFlags:
    """IC's payment blocks of one account (customer record), compared for AUS only."""

    block_payments_cc: bool
    block_payments_eft: bool


@dataclass(frozen=True)
class CisAccount:
    """What the CIS says about one account (inHance BalanceCheck or AUS GetAccountData)."""

    balance: Decimal
    future_balance: Decimal | None = None  # inHance
    cash_only: bool | None = None  # AUS


@dataclass(frozen=True)
class Rules:
    """Which comparisons apply to a biller."""

    future_balance: bool = False  # inHance "version 2": IC TotalAmountDue vs CIS FutureBalance
    cash_only: bool = False  # AUS: IC BlockPaymentsCC/BlockPaymentsEFT vs CIS CashOnly (rule 7)


@dataclass
class Item:
    """One account's result; stored when not a match (matches are only counted)."""

    account_number: str
    invoice_number: str
    outcome: Outcome
    ic_balance_due: Decimal | None = None
    ic_total_amount_due: Decimal | None = None
    ic_block_cc: bool | None = None
    ic_block_eft: bool | None = None
    cis_balance: Decimal | None = None
    cis_future_balance: Decimal | None = None
    cis_cash_only: bool | None = None
    difference: Decimal | None = None
    total_difference: Decimal | None = None
    message: str = ""
    corrected: bool = False
    correction_error: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    open_invoices: int = 1
    notes: list[str] = field(default_factory=list, repr=False)

    @property
    def is_mismatch(self) -> bool:
        return self.outcome in MISMATCHES

    @property
    def own_difference(self) -> Decimal | None:
        """The difference of the item's own kind: the total's (IC TotalAmountDue − CIS
        FutureBalance) for a total-due mismatch, the balance's otherwise (None: not compared)."""
        return self.total_difference if self.outcome is Outcome.TOTAL_MISMATCH else self.difference


@dataclass(frozen=True)
class Correction:
    """What to write to IC so it shows what the CIS says; None fields are left alone."""

    balance_due: Decimal | None = None
    total_amount_due: Decimal | None = None
    block_payments_cc: bool | None = None
    block_payments_eft: bool | None = None

    @property
    def balance(self) -> bool:
        return self.balance_due is not None

    @property
    def flags(self) -> bool:
        return self.block_payments_cc is not None


def _base(ic: IcAccount, flags: IcFlags | None) -> Item:
    return Item(
        account_number=ic.account_number,
        invoice_number=ic.invoice_number,
        outcome=Outcome.MATCH,
        ic_balance_due=cents(ic.balance_due),
        ic_total_amount_due=cents(ic.total_amount_due),
        ic_block_cc=None if flags is None else flags.block_payments_cc,
        ic_block_eft=None if flags is None else flags.block_payments_eft,
        open_invoices=ic.open_invoices,
    )


def error_item(ic: IcAccount, outcome: Outcome, message: str, flags: IcFlags | None = None) -> Item:
    """A `missing_in_cis` or `cis_error` item: IC's side and the CIS's message."""
    item = _base(ic, flags)
    item.outcome = outcome
    item.message = message
    return item


def compare(ic: IcAccount, cis: CisAccount, rules: Rules, flags: IcFlags | None = None) -> Item:
    """The outcome of one account: a balance difference wins over a total-due difference, which
    wins over a flags difference (one outcome per account); the message then says what else
    differs too."""
    item = _base(ic, flags)
    item.cis_balance = cents(cis.balance)
    missing = [name for name, wanted, value in (
        ("FutureBalance", rules.future_balance, cis.future_balance),
        ("CashOnly", rules.cash_only, cis.cash_only),
    ) if wanted and value is None]
    if missing:  # the CIS answered without a field this biller compares: a CIS problem, not a difference
        item.outcome = Outcome.CIS_ERROR
        item.message = f"CIS answer has no {' and '.join(missing)}"
        return item
    item.difference = item.ic_balance_due - item.cis_balance  # type: ignore[operator]
    reasons: list[str] = []
    if item.difference:
        reasons.append(f"BalanceDue {item.ic_balance_due} vs CIS Balance {item.cis_balance}")
    total_only = False
    if rules.future_balance and cis.future_balance is not None:
        item.cis_future_balance = cents(cis.future_balance)
        item.total_difference = item.ic_total_amount_due - item.cis_future_balance  # type: ignore[operator]
        if item.total_difference:
            total_only = not item.difference
            reasons.append(f"TotalAmountDue {item.ic_total_amount_due} vs CIS FutureBalance {item.cis_future_balance}")
    flag_reason = ""
    if rules.cash_only and cis.cash_only is not None:
        item.cis_cash_only = cis.cash_only
        if flags is not None:
            wanted = bool(cis.cash_only)
            if flags.block_payments_cc != wanted or flags.block_payments_eft != wanted:
                flag_reason = (
                    f"BlockPaymentsCC={flags.block_payments_cc} BlockPaymentsEFT={flags.block_payments_eft} "
                    f"vs CIS CashOnly={wanted}"
                )
        else:
            item.notes.append("IC has no customer record: flags not compared")
    if reasons:  # a balance difference first; a total due alone is a kind of its own, with its own difference
        item.outcome = Outcome.TOTAL_MISMATCH if total_only else Outcome.BALANCE_MISMATCH
        item.message = "; ".join(reasons + ([f"flags differ too: {flag_reason}"] if flag_reason else []))
    elif flag_reason:
        item.outcome = Outcome.FLAGS_MISMATCH
        item.message = flag_reason
    if item.notes and item.outcome is not Outcome.MATCH:
        item.message = "; ".join([item.message, *item.notes])
    return item


def plan_correction(item: Item, rules: Rules) -> Correction | None:
    """What makes IC equal to the CIS for a mismatched item, or None (nothing to write)."""
    if not item.is_mismatch:
        return None
    balance_due = total = cc = eft = None
    if item.difference or (item.total_difference and item.cis_future_balance is not None):
        balance_due = item.cis_balance
        if rules.future_balance and item.cis_future_balance is not None:
            total = item.cis_future_balance
    if rules.cash_only and item.cis_cash_only is not None and item.ic_block_cc is not None:
        wanted = bool(item.cis_cash_only)
        if item.ic_block_cc != wanted or item.ic_block_eft != wanted:
            cc = eft = wanted  # rule 7: CashOnly sets both blocks; there is no flag for one alone
    if balance_due is None and cc is None:
        return None
    return Correction(balance_due, total, cc, eft)


def before_after(item: Item, correction: Correction) -> tuple[dict[str, Any], dict[str, Any]]:
    """The IC values a correction replaces and the values it writes (JSON-ready)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if correction.balance_due is not None:
        before["BalanceDue"], after["BalanceDue"] = str(item.ic_balance_due), str(correction.balance_due)
    if correction.total_amount_due is not None:
        before["TotalAmountDue"] = str(item.ic_total_amount_due)
        after["TotalAmountDue"] = str(correction.total_amount_due)
    if correction.block_payments_cc is not None:
        before["BlockPaymentsCC"], after["BlockPaymentsCC"] = item.ic_block_cc, correction.block_payments_cc
        before["BlockPaymentsEFT"], after["BlockPaymentsEFT"] = item.ic_block_eft, correction.block_payments_eft
    return before, after
