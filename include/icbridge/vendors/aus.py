"""Harris AUS (CIS Infinity): the IC Daily Export (invoices), RTDR by GetAccountData, the data
pump by AddPendingPayment, UpdatePaymentPlan and UpdateCisLinkTableEBillAndLinkRegistration
(specs/web-services.md, docs/cis-services.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from icbridge.vendors.base import BalanceReading, ChangeKind, CisVendor, Flow, PaymentAnswer, PaymentPost

if TYPE_CHECKING:
    from icbridge.config.biller import BillerConfig, CisServiceConfig
    from icbridge.hooks.cis import CisHookBase
    from icbridge.reconcile.compare import Rules
    from icbridge.reconcile.engine import CisLookup
    from icbridge.soap.aus import AusClient
    from icbridge.soap.cis import CisResult


class AusService:
    """The AUS web services over one AusClient."""

    def __init__(self, client: AusClient) -> None:
        self.client = client

    def read_balance(self, account_number: str, invoice_number: str | None) -> BalanceReading:
        data = self.client.get_account_data(account_number)
        return BalanceReading(data, data.balance, cash_only=data.cash_only)

    def post_payment(self, post: PaymentPost) -> PaymentAnswer:
        result = self.client.add_pending_payment(
            post.account_number,
            post.payment_date,
            post.amount,
            post.payment_type,
            post.payment_guid,
            post.convenience_fee,
        )
        return PaymentAnswer(result.ok, result.message, result.pending_payment_id or None,
                             credentials_refused=result.credentials_refused)

    def apply_change(self, kind: ChangeKind, account_number: str, value: bool | str) -> CisResult:
        if kind == "paperless":  # no email leaves the CIS's own
            return self.client.update_ebill_registration(account_number, bool(value), None)
        if kind == "autopay":
            return self.client.update_payment_plan(account_number, bool(value))
        raise ValueError(f"AUS takes no {kind} change (seed 004)")


class Aus(CisVendor):
    name = "aus"
    label = "AUS"
    flows: ClassVar[frozenset[Flow]] = frozenset({"invoices", "balance_all", "balances", "payments",
                                                  "customer_changes"})
    change_kinds: ClassVar[frozenset[ChangeKind]] = frozenset({"paperless", "autopay"})
    balance_method = "GetAccountData"
    payment_method = "AddPendingPayment"

    def methods(self) -> tuple[str, ...]:
        from icbridge.soap.aus import METHODS

        return tuple(METHODS)

    def hook_class(self) -> type[CisHookBase]:
        from icbridge.hooks.aus import AusHook

        return AusHook

    def service(self, client: object) -> AusService:
        from icbridge.soap.aus import AusClient

        if not isinstance(client, AusClient):
            raise TypeError(f"an AUS service needs an AusClient, not {type(client).__name__}")
        return AusService(client)

    def balance_all_lookup(self, biller: BillerConfig) -> tuple[CisLookup, Rules]:
        from icbridge.reconcile.cis import aus_lookup

        client = self.hook_class().for_biller(biller).get_conn()
        return aus_lookup(client.lean()), self.balance_rules(biller)  # lean path: docs/balance-all.md

    def balance_rules(self, biller: BillerConfig) -> Rules:
        from icbridge.reconcile.compare import Rules

        return Rules(cash_only=True)  # rule 7: CashOnly against both IC payment blocks

    def balances_rules(self, cis: CisServiceConfig) -> tuple[str, str]:
        return "", "; CashOnly → BlockPaymentsCC and BlockPaymentsEFT (rule 7, `UpdateCustomerRecord`)"

    def balance_all_rules(self, cis: CisServiceConfig) -> str:
        return ", and BlockPaymentsCC/BlockPaymentsEFT against CashOnly (rule 7)"

    def change_mapping(self) -> str:
        return ("Paperless → `UpdateCisLinkTableEBillAndLinkRegistration`, AutoPay → `UpdatePaymentPlan`; "
                "Email and Phone are skipped and counted (AUS has no email/phone change log, seed 004)")


AUS = Aus()
