"""Fixtures of the DAG tests: ``sync_world``, the IC, inHance and AUS simulators behind
AIRFLOW_CONN_* connections, and the sync DAGs built for a demo-shaped biller of each CIS."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml

from icbridge.config.biller import load_biller
from icbridge.state.payments import PaymentLedger
from tests.support.cis_sims import start_cis_sims
from tests.support.dags import SYNC_BUILDERS, demo_shaped


@pytest.fixture
def sync_world(tmp_path, ic_sim, set_airflow_conn, dag_env):
    billers, state = dag_env.billers, dag_env.state_url
    set_airflow_conn("t_ic", **ic_sim.conn_fields())
    sims = start_cis_sims(tmp_path, ic_sim.server)
    inhance, aus, keys = sims.inhance, sims.aus, sims.keys
    set_airflow_conn("t_inhance_cis", conn_type="inhance", host=inhance.endpoint_url("t_inhance"),
                     password=keys["inhance"])
    set_airflow_conn("t_inhance_cis_payments", conn_type="inhance",
                     host=inhance.endpoint_url("t_inhance", "payments"), password=keys["payments"])
    set_airflow_conn("t_aus_cis", conn_type="aus_cis", host=aus.endpoint_url("t_aus"), password=keys["aus"])
    for account, invoice in (("1001", "7001"), ("1002", "7002")):
        ic_sim.sim.add_invoice(ic_sim.biller_guid, account, invoice, "100.00")
        ic_sim.sim.add_customer(ic_sim.biller_guid, account)

    class World:
        ic = ic_sim.sim
        guid = ic_sim.biller_guid

        def __init__(self) -> None:
            self.sims = {"inhance": inhance, "aus": aus}

        def dag(self, cis: str, flow: str, **sync):
            config = demo_shaped(cis, ic_sim.bid)
            config["sync"].update(sync)
            path = billers / f"t_{cis}.yaml"
            path.write_text(yaml.safe_dump(config))
            return SYNC_BUILDERS[flow].build(load_biller(path), billers)

        def run(self, dag, interval_start: datetime, length: timedelta = timedelta(minutes=15), **test):
            """Run the DAG for ``[interval_start, interval_start + length)``: a manual run covers the
            last whole interval before its logical date, so the interval's end is passed."""
            run = dag.test(logical_date=interval_start + length, **test)
            assert run.data_interval_start == interval_start, (run.data_interval_start, interval_start)
            return run

        def ledger_rows(self, cis: str):
            ledger = PaymentLedger(state)
            try:
                return ledger.rows(f"t_{cis}")
            finally:
                ledger.dispose()

    yield World()
    sims.stop()
