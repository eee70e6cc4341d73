"""Fixtures of the flow tests: ``world``, the simulators and a SQLite payment ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from icbridge.state.payments import PaymentLedger
from tests.support.cis_sims import start_cis_sims
from tests.support.sync_world import World


@pytest.fixture
def world(ic_sim, tmp_path: Path) -> Iterator[World]:
    sims = start_cis_sims(tmp_path, ic_sim.server, email="cis@example.org", phone="555-9999")
    for account, invoice in (("1001", "7001"), ("1002", "7002"), ("1003", "7003")):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, account, invoice, "100.00")
        ic_sim.sim.add_customer(ic_sim.biller_guid, account, email_address="ic@example.org", phone="555-0000")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ledger = PaymentLedger(url)
    try:
        yield World(ic_sim, sims.inhance, sims.aus, sims.keys, ledger, url)
    finally:
        ledger.dispose()
        sims.stop()
