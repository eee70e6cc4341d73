"""The CIS part of SimStack: inHance and AUS simulators for every biller with a cis_service.

Each distinct connection id of a biller's ``cis_service`` (the default one and each
per-method one) becomes its own simulated endpoint with its own generated key, so the demo
exercises rule 6 (each inHance method may have its own URL and password) end to end. Keys
live in the stack's secrets.json (``billers.<id>.cis_keys``), never in the repository.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icbridge.config.biller import BillerConfig
from icbsim.aus import AusSimulator
from icbsim.cis import CisSimulator
from icbsim.inhance import InhanceSimulator
from icbsim.soapserver import SoapServer

__all__ = ["CONN_TYPES", "CisPlan", "CisSimulators", "plan_cis"]

CONN_TYPES = {"inhance": "inhance", "aus": "aus_cis"}


@dataclass(frozen=True)
class CisPlan:
    """One biller's simulated CIS endpoints: conn_id -> key (secrets: do not log)."""

    biller: BillerConfig
    keys: dict[str, str] = field(repr=False)

    @property
    def cis(self) -> str:
        return self.biller.cis


def plan_cis(billers: list[BillerConfig], data: dict[str, Any]) -> tuple[list[CisPlan], bool]:
    """Keys for every CIS connection of every biller, from (or added to) the secrets ``data``.

    Returns the plans and whether ``data`` changed (the caller saves it).
    """
    plans, changed = [], False
    for biller in billers:
        if biller.cis_service is None or biller.cis not in CONN_TYPES:
            continue
        keys = data["billers"].setdefault(biller.biller_id, {}).setdefault("cis_keys", {})
        for conn_id in biller.cis_service.conn_ids():
            if not keys.get(conn_id):
                keys[conn_id] = secrets.token_urlsafe(24)
                changed = True
        plans.append(CisPlan(biller, {c: keys[c] for c in biller.cis_service.conn_ids()}))
    return plans, changed


class CisSimulators:
    """Both CIS simulators on the stack's SOAP server, with every planned endpoint registered."""

    def __init__(self, state_dir: Path, server: SoapServer, plans: list[CisPlan]) -> None:
        self.inhance = InhanceSimulator(Path(state_dir) / "inhance_sim.sqlite", server)
        self.aus = AusSimulator(Path(state_dir) / "aus_sim.sqlite", server)
        self.plans = list(plans)
        for plan in self.plans:
            sim = self.simulator(plan.cis)
            cis = plan.biller.cis_service
            assert cis is not None
            sim.add_biller(plan.biller.biller_id, plan.keys[cis.conn_id])
            for conn_id in cis.conn_ids()[1:]:
                sim.add_endpoint(plan.biller.biller_id, conn_id, plan.keys[conn_id])

    def simulator(self, cis: str) -> CisSimulator:
        return self.inhance if cis == "inhance" else self.aus

    def stop(self) -> None:
        """Close both databases (the server belongs to the stack)."""
        for sim in (self.inhance, self.aus):
            sim.stop()

    def connections(self, base_url: str) -> dict[str, dict[str, Any]]:
        """conn_id -> AIRFLOW_CONN JSON fields; ``base_url`` is ``http://host:port`` as clients dial it."""
        conns: dict[str, dict[str, Any]] = {}
        for plan in self.plans:
            cis = plan.biller.cis_service
            assert cis is not None
            sim = self.simulator(plan.cis)
            for conn_id in cis.conn_ids():
                name = "default" if conn_id == cis.conn_id else conn_id
                conns[conn_id] = {
                    "conn_type": CONN_TYPES[plan.cis],
                    "host": base_url + sim.endpoint_path(plan.biller.biller_id, name),
                    "password": plan.keys[conn_id],
                    "extra": {"timeout": 30, "verify": True},
                }
        return conns
