"""What a CIS vendor declares, in one typed object: the registry's interface.

A vendor module (vendors/aus.py, inhance.py, logis.py) defines one :class:`CisVendor`
subclass: the flows it supports, its hook (and so its client and connection type), how it
reads a balance, posts a payment and applies each customer change (a :class:`CisService`
over its client), its Balance All lookup, the cis_service settings only it takes, and the
labels the DAG docs use. Every place that behaves per vendor asks the biller's vendor
(``vendor(biller.cis)``); nothing tests the vendor's name. No Airflow imports here: hooks
and clients are imported when a vendor is asked for them, so DAG parsing stays light.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from icbridge.config.biller import BillerConfig, CisServiceConfig
    from icbridge.hooks.cis import CisHookBase
    from icbridge.reconcile.compare import Rules
    from icbridge.reconcile.engine import CisLookup
    from icbridge.soap.cis import CisResult

Flow = Literal["invoices", "payment_export", "balance_all", "balances", "payments", "customer_changes"]
FLOWS: tuple[Flow, ...] = ("invoices", "balance_all", "balances", "payments", "customer_changes", "payment_export")
"""Every flow, in the order a biller's flows are listed (health page, preflight)."""
SYNC_FLOWS: tuple[Flow, ...] = ("balances", "payments", "customer_changes")
WEB_SERVICE_FLOWS: frozenset[Flow] = frozenset({"balance_all", *SYNC_FLOWS})
"""The flows that call the CIS's web services (they need a cis_service section)."""
ChangeKind = Literal["paperless", "autopay", "email"]


@dataclass(frozen=True)
class BalanceReading:
    """One account's balance as the CIS answered it (RTDR, Balance All).

    ``answer``: the CIS's verdict (``ok``, ``message``, ``not_found``); when ok, ``balance``
    (Decimal, dollars), ``future_balance`` (inHance, rule 1: None where the CIS has none),
    ``cash_only`` (AUS CashOnly, rule 7: None where the CIS has no such flag) and ``email``
    ("" when none; inHance rule 2)."""

    answer: CisResult
    balance: Decimal | None = None
    future_balance: Decimal | None = None
    cash_only: bool | None = None
    email: str = ""


@dataclass(frozen=True)
class PaymentPost:
    """One IC payment as the data pump posts it: the CIS account (conveyance suffix dropped,
    rule 4), PaymentDate, IC's PaymentGUID (the reference the biller matches), the invoice
    paid, the payment type as the CIS names it (rule 5), amount and fee in dollars."""

    account_number: str
    payment_date: datetime
    payment_guid: str
    invoice_number: str
    payment_type: str
    amount: Decimal
    convenience_fee: Decimal


@dataclass(frozen=True)
class PaymentAnswer:
    """The CIS's answer to a posted payment: accepted or refused (with its message), its
    reference for the payment when it gives one (AUS PendingPaymentID), and whether the
    refusal was of the web-service key (nothing applied)."""

    ok: bool
    message: str
    reference: str | None = None
    credentials_refused: bool = False


class CisService(Protocol):
    """A vendor's web services over one connected client, as the flows use them. Errors of
    the call (transport, SOAP faults, answers that cannot be judged) raise, as the client
    raises them (icbridge.soap.errors); a business refusal is an answer with ``ok`` False."""

    def read_balance(self, account_number: str, invoice_number: str | None) -> BalanceReading:
        """The account's balance; ValueError when the request cannot be made (inHance: an
        invoice number that is not an integer)."""
        ...

    def post_payment(self, post: PaymentPost) -> PaymentAnswer:
        """Post one payment (moves money: an error of the call leaves it in doubt)."""
        ...

    def apply_change(self, kind: ChangeKind, account_number: str, value: bool | str) -> CisResult:
        """Apply one customer change (``kind`` one of the vendor's ``change_kinds``)."""
        ...


class CisVendor(ABC):
    """One CIS vendor (a Harris system): what it supports and how (module docstring)."""

    name: ClassVar[str]  # as the biller file's ``cis`` names it
    label: ClassVar[str]  # as people name it ("inHance", "AUS")
    flows: ClassVar[frozenset[Flow]]
    settings_only: ClassVar[tuple[str, ...]] = ()  # cis_service fields only this vendor takes
    change_kinds: ClassVar[frozenset[ChangeKind]] = frozenset()
    balance_method: ClassVar[str] = ""  # the SOAP method RTDR and Balance All read balances with
    payment_method: ClassVar[str] = ""  # the SOAP method the data pump posts payments with
    balance_needs_invoice: ClassVar[bool] = False  # the balance call names the account's IC invoice

    @property
    def has_web_services(self) -> bool:
        return bool(self.flows & WEB_SERVICE_FLOWS)

    def methods(self) -> tuple[str, ...]:
        """The SOAP methods of the vendor's web service (``method_conn_ids`` keys)."""
        return ()

    def hook_class(self) -> type[CisHookBase]:
        """The Airflow hook of the vendor's web service (one connection type)."""
        raise ValueError(f"cis {self.name} has no web services")

    @abstractmethod
    def service(self, client: object) -> CisService:
        """The vendor's CisService over a client its hook gave (``hook.get_conn()``)."""

    def connect(self, biller: BillerConfig) -> CisService:
        """The biller's CisService over a client of its ``cis_service`` connections."""
        return self.service(self.hook_class().for_biller(biller).get_conn())

    def balance_all_lookup(self, biller: BillerConfig) -> tuple[CisLookup, Rules]:
        """Balance All's CIS lookup for this biller (the client's lean template path) and the
        comparisons that apply to it (:meth:`balance_rules`)."""
        raise ValueError(f"cis {self.name} has no balance to reconcile")

    def balance_rules(self, biller: BillerConfig) -> Rules:
        """The Balance All comparisons that apply to the biller (which report columns it has);
        no connection is made. By default the balance alone."""
        from icbridge.reconcile.compare import Rules

        return Rules()

    def payment_type(self, cis: CisServiceConfig, ic_payment_type: str) -> str:
        """IC's payment type as this CIS is sent it (rule 5); by default unchanged."""
        return ic_payment_type

    # labels of the DAG docs (dagbuild) ------------------------------------------------------

    def balances_rules(self, cis: CisServiceConfig) -> tuple[str, str]:
        """For the balances DAG's doc: how the balance call is made, what else the balance
        update sets, and what RTDR updates beyond it."""
        return "", ""

    def balance_call_doc(self) -> str:
        """The balance call as the balances DAG's doc names it."""
        return f"`{self.balance_method}`"

    def balance_all_rules(self, cis: CisServiceConfig) -> str:
        """What Balance All compares beyond the balance, for its DAG's doc."""
        return ""

    def change_mapping(self) -> str:
        """Which IC change goes to which SOAP method, for the customer_changes DAG's doc."""
        return ""

    def payment_rules(self, cis: CisServiceConfig) -> str:
        """The payment rules that apply to this vendor, for the payments DAG's doc."""
        return ""
