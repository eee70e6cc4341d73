"""The sync flows without Airflow: the IC, inHance and AUS simulators and a payment ledger
(``World``), a biller of either CIS, and the interval and call policy the flow tests use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from icbridge.calls import CallPolicy
from icbridge.config.biller import BillerConfig
from icbridge.flows.balances import run_balances
from icbridge.flows.customer_changes import run_customer_changes
from icbridge.flows.payments import run_payments
from icbridge.flows.sync_common import Interval
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import DEFAULT, CisEndpoint
from icbridge.soap.inhance import InhanceClient
from icbridge.state.payments import PaymentLedger
from icbridge.vendors import vendor
from icbsim.aus import AusSimulator
from icbsim.inhance import InhanceSimulator

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
IV = Interval(T0, T0 + timedelta(minutes=15))
POLICY = CallPolicy(in_flight=4, per_second=0, attempts=3, backoff_seconds=0)


def sync_biller(cis: str, **cis_service) -> BillerConfig:
    return BillerConfig.model_validate({
        "biller_id": f"t_{cis}", "bid": "321", "name": "T", "cis": cis, "ic_conn_id": "t_ic",
        "cis_service": {"conn_id": "t_cis", **cis_service},
    })


@dataclass
class World:
    ic: object  # IcSim
    inhance: InhanceSimulator
    aus: AusSimulator
    keys: dict[str, str]
    ledger: PaymentLedger
    state_url: str

    @property
    def guid(self) -> str:
        return self.ic.biller_guid

    def ic_client(self):
        return self.ic.client(timeout=10)

    def inhance_client(self, timeout: float = 10, payments_url: str | None = None) -> InhanceClient:
        """Default endpoint for RTDR/setters, its own endpoint and key for payments (rule 6)."""
        return InhanceClient({
            DEFAULT: CisEndpoint(self.inhance.endpoint_url("t_inhance"), self.keys["inhance"]),
            "MakePaymentExtended": CisEndpoint(payments_url or self.inhance.endpoint_url("t_inhance", "payments"),
                                               self.keys["payments"]),
        }, timeout=timeout)

    def aus_client(self, timeout: float = 10) -> AusClient:
        return AusClient.single(self.aus.endpoint_url("t_aus"), self.keys["aus"], timeout=timeout)

    def client(self, cis: str, **kw):
        return self.inhance_client(**kw) if cis == "inhance" else self.aus_client(**kw)

    def sim(self, cis: str):
        return self.inhance if cis == "inhance" else self.aus

    def pay(self, account: str, amount: str = "25.00", when: datetime | None = None, **kw) -> str:
        return self.ic.sim.add_payment(self.guid, account, kw.pop("invoice", "7001"), amount,
                                       when or T0 + timedelta(minutes=5), **kw)

    def touch(self, account: str, minute: int = 1) -> None:
        """Make an account active in IV through the change log (no payment: nothing deferred)."""
        self.ic.sim.add_change(self.guid, account, "Phone", "555-0101", T0 + timedelta(minutes=minute))

    def payments(self, biller: BillerConfig, interval: Interval = IV, run_id: str = "r1#try1", **kw):
        client = kw.pop("client", None) or self.client(biller.cis, **kw)
        return run_payments(biller=biller, ic=self.ic_client(), cis=vendor(biller.cis).service(client),
                            ledger=self.ledger, interval=interval,
                            run_id=run_id, policy=POLICY)

    def balances(self, biller: BillerConfig, interval: Interval = IV, policy: CallPolicy = POLICY, **kw):
        cis = vendor(biller.cis).service(self.client(biller.cis, **kw))
        return run_balances(biller=biller, ic=self.ic_client(), cis=cis,
                            interval=interval, policy=policy, ledger=self.ledger)

    def changes(self, biller: BillerConfig, interval: Interval = IV, **kw):
        cis = vendor(biller.cis).service(self.client(biller.cis, **kw))
        return run_customer_changes(biller=biller, ic=self.ic_client(), cis=cis,
                                    interval=interval, policy=POLICY)

    def row(self, biller: BillerConfig, guid: str):
        return self.ledger.get(biller.biller_id, guid)
