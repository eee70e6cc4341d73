"""Fixtures of the SOAP tests: ``hostile``, the raw-bytes HTTP server, and ``world_hostile``,
the sync simulators with a hostile server beside them (the flows against odd answers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from icbridge.state.payments import PaymentLedger
from tests.support.cis_sims import start_cis_sims
from tests.support.hostile_http import HostileServer
from tests.support.sync_world import World, sync_biller


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def world_hostile(ic_sim, tmp_path) -> Iterator[Any]:

    sims = start_cis_sims(tmp_path, ic_sim.server, email="cis@example.org", phone="555-9999")
    for account, invoice in (("1001", "7001"), ("55501002", "7002")):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, account, invoice, "100.00")
        ic_sim.sim.add_customer(ic_sim.biller_guid, account, email_address="ic@example.org", phone="555-0000")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ledger = PaymentLedger(url)
    with HostileServer() as server:
        try:
            yield World(ic_sim, sims.inhance, sims.aus, sims.keys, ledger, url), server, sync_biller("inhance")
        finally:
            ledger.dispose()
            sims.stop()
