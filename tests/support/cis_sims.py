"""The inHance and AUS simulators the sync tests share: billers ``t_inhance`` (a default endpoint and
its own payments endpoint and key, rule 6) and ``t_aus``, each with accounts 1001 and 1002."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icbsim.aus import AusSimulator
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer


@dataclass
class CisSims:
    inhance: InhanceSimulator
    aus: AusSimulator
    keys: dict[str, str]  # "inhance", "payments" (t_inhance's payments endpoint), "aus": fresh per test

    def stop(self) -> None:
        self.inhance.stop()
        self.aus.stop()


def start_cis_sims(folder: Path, server: SoapServer, **account_1001: Any) -> CisSims:
    """Account 1001: balance 80.00, future balance 105.00 (+ ``account_1001``); 1002: 10.00, cash only."""
    keys = {name: secrets.token_urlsafe(16) for name in ("inhance", "payments", "aus")}
    inhance = InhanceSimulator(folder / "inhance.sqlite", server)
    aus = AusSimulator(folder / "aus.sqlite", server)
    inhance.add_biller("t_inhance", keys["inhance"])
    inhance.add_endpoint("t_inhance", "payments", keys["payments"])
    aus.add_biller("t_aus", keys["aus"])
    for sim, biller in ((inhance, "t_inhance"), (aus, "t_aus")):
        sim.add_account(biller, "1001", balance="80.00", future_balance="105.00", **account_1001)
        sim.add_account(biller, "1002", balance="10.00", cash_only=True)
    return CisSims(inhance, aus, keys)
