"""Harris inHance: RTDR by BalanceCheck, the data pump by MakePaymentExtended and the Set*
methods (specs/web-services.md, docs/cis-services.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from icbridge.vendors.base import BalanceReading, ChangeKind, CisVendor, Flow, PaymentAnswer, PaymentPost

if TYPE_CHECKING:
    from icbridge.config.biller import BillerConfig, CisServiceConfig
    from icbridge.hooks.cis import CisHookBase
    from icbridge.reconcile.compare import Rules
    from icbridge.reconcile.engine import CisLookup
    from icbridge.soap.cis import CisResult
    from icbridge.soap.inhance import InhanceClient

PAYPAL = "paypal"


class InhanceService:
    """The inHance web services over one InhanceClient."""

    def __init__(self, client: InhanceClient) -> None:
        self.client = client

    def read_balance(self, account_number: str, invoice_number: str | None) -> BalanceReading:
        if not invoice_number:
            raise ValueError("BalanceCheck names the account's IC invoice as LastInvoiceNumber: there is none")
        result = self.client.balance_check(account_number, invoice_number)
        return BalanceReading(result, result.balance, result.future_balance,
                              email=result.email)

    def post_payment(self, post: PaymentPost) -> PaymentAnswer:
        result = self.client.make_payment_extended(
            post.account_number,
            post.payment_date,
            post.payment_guid,  # PaymentReference: IC's id, so the biller can match it
            post.invoice_number,  # DocumentNumber: the invoice paid
            post.payment_type,
            post.amount,
            post.convenience_fee,
        )
        return PaymentAnswer(result.ok, result.message, credentials_refused=result.credentials_refused)

    def apply_change(self, kind: ChangeKind, account_number: str, value: bool | str) -> CisResult:
        if kind == "email":
            return self.client.set_email(account_number, str(value))
        if kind == "paperless":
            return self.client.set_paperless(account_number, bool(value))
        return self.client.set_autopay(account_number, bool(value))


class Inhance(CisVendor):
    name = "inhance"
    label = "inHance"
    flows: ClassVar[frozenset[Flow]] = frozenset({"balance_all", "balances", "payments", "customer_changes"})
    settings_only = ("rtdr_version", "rtdr_updates_email", "paypal_payment_type")
    change_kinds: ClassVar[frozenset[ChangeKind]] = frozenset({"paperless", "autopay", "email"})
    balance_method = "BalanceCheck"
    payment_method = "MakePaymentExtended"
    balance_needs_invoice = True

    def methods(self) -> tuple[str, ...]:
        from icbridge.soap.inhance import METHODS

        return tuple(METHODS)

    def hook_class(self) -> type[CisHookBase]:
        from icbridge.hooks.inhance import InhanceHook

        return InhanceHook

    def service(self, client: object) -> InhanceService:
        from icbridge.soap.inhance import InhanceClient

        if not isinstance(client, InhanceClient):
            raise TypeError(f"an inHance service needs an InhanceClient, not {type(client).__name__}")
        return InhanceService(client)

    def balance_all_lookup(self, biller: BillerConfig) -> tuple[CisLookup, Rules]:
        from icbridge.reconcile.cis import inhance_lookup

        rules = self.balance_rules(biller)
        client = self.hook_class().for_biller(biller).get_conn()
        return inhance_lookup(client.lean()), rules  # lean: docs/balance-all.md

    def balance_rules(self, biller: BillerConfig) -> Rules:
        from icbridge.reconcile.compare import Rules

        cis = biller.cis_service
        if cis is None:
            raise ValueError(f"biller {biller.biller_id} has no cis_service section")
        return Rules(future_balance=cis.rtdr_version == 2)  # "version 2": TotalAmountDue vs FutureBalance

    def payment_type(self, cis: CisServiceConfig, ic_payment_type: str) -> str:
        """Rule 5: PayPal is sent as setting 116 (default "Credit Card"); other types as IC names them."""
        return cis.paypal_payment_type if ic_payment_type.strip().lower() == PAYPAL else ic_payment_type

    def balances_rules(self, cis: CisServiceConfig) -> tuple[str, str]:
        email = "the CIS email → IC" if cis.rtdr_updates_email else "email not touched"
        total = ", TotalAmountDue = FutureBalance: version 2, rule 1" if cis.rtdr_version == 2 else ""
        return total, f"; {email} (rule 2); phone ignored"

    def balance_call_doc(self) -> str:
        return "`BalanceCheck` with the IC invoice as LastInvoiceNumber"

    def balance_all_rules(self, cis: CisServiceConfig) -> str:
        return ", and TotalAmountDue against FutureBalance (version 2)" if cis.rtdr_version == 2 else ""

    def change_mapping(self) -> str:
        return "Paperless → `SetPaperless`, AutoPay → `SetAutopay`, Email → `SetEmail`; Phone is ignored"

    def payment_rules(self, cis: CisServiceConfig) -> str:
        return f" Rule 5: PayPal is sent as \"{cis.paypal_payment_type}\"."


INHANCE = Inhance()
