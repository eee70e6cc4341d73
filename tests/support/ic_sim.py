"""SOAP fixtures: a live Invoice Cloud simulator on 127.0.0.1 and an Airflow connection to it.

The biller's GUID and key are generated per test (uuid/secrets), never written to the repo.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from icbridge.soap.invoice_cloud import InvoiceCloudClient
from icbsim.invoice_cloud import InvoiceCloudSimulator
from icbsim.soapserver import SoapServer


@dataclass
class IcSim:
    """A running IC simulator and the credentials of its one biller."""

    sim: InvoiceCloudSimulator
    server: SoapServer
    biller_guid: str
    web_service_key: str
    bid: str
    db_path: Path

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    def client(self, **options: object) -> InvoiceCloudClient:
        """An IC client with this biller's credentials (options: timeout, ca_file, verify)."""
        return InvoiceCloudClient(self.base_url, self.biller_guid, self.web_service_key, **options)  # type: ignore[arg-type]

    def conn_fields(self, timeout: float = 10) -> dict:
        """The fields of an ``invoice_cloud`` Airflow connection to this biller (for set_airflow_conn)."""
        return {"conn_type": "invoice_cloud", "host": self.base_url, "login": self.biller_guid,
                "password": self.web_service_key, "extra": {"timeout": timeout}}


@pytest.fixture
def ic_sim(tmp_path: Path) -> Iterator[IcSim]:
    """A started SOAP server with the IC simulator and one biller with fresh credentials."""
    server = SoapServer().start()
    db_path = tmp_path / "ic_sim.sqlite"
    sim = InvoiceCloudSimulator(db_path, server)
    handle = IcSim(
        sim=sim,
        server=server,
        biller_guid=str(uuid.uuid4()),
        web_service_key=secrets.token_urlsafe(24),
        bid=str(100 + secrets.randbelow(900)),
        db_path=db_path,
    )
    sim.add_biller(handle.biller_guid, handle.web_service_key, handle.bid)
    try:
        yield handle
    finally:
        server.stop()
        sim.stop()


@pytest.fixture
def ic_conn_id(ic_sim: IcSim, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection (env var, so no metadata DB) to the simulator's biller."""
    conn_id = "ic_test"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "invoice_cloud",
                "host": ic_sim.base_url,
                "login": ic_sim.biller_guid,
                "password": ic_sim.web_service_key,
                "extra": {"timeout": 10, "verify": True},
            }
        ),
    )
    return conn_id
