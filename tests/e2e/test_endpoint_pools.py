"""Issue 20 item 3, under the real scheduler (``airflow standalone``, LocalExecutor): three
billers on one hosted inHance endpoint (``cis_service.endpoint: shared_inhance``), each allowed
3 calls in flight, run their payments DAGs in the same minute. Their tasks share the pool
``icb_cis_shared_inhance`` (6 slots, 3 a task): the simulator, which counts the calls it is
answering at once, never sees more than 6, though the three tasks alone would open 9."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from icbsim.local_airflow import (
    ADMIN,
    Api,
    airflow_env,
    free_port,
    read_admin_password,
    start_airflow,
    unpause,
    wait_for_dag,
    wait_healthy,
)
from icbsim.stack import SimStack
from tests.support.services import REPO

BILLERS = ("pool_a", "pool_b", "pool_c")
POOL, SLOTS, IN_FLIGHT, PAYMENTS = "icb_cis_shared_inhance", 6, 3, 24


def _billers(folder: Path) -> Path:
    text = (REPO / "include" / "billers" / "demo_inhance.yaml").read_text()
    folder.mkdir()
    for n, biller_id in enumerate(BILLERS):
        config = yaml.safe_load(text.replace("demo_inhance", biller_id))
        config["bid"] = str(700 + n)
        config.pop("balance_all", None)
        config["cis_service"].update(endpoint="shared_inhance", calls_in_flight=IN_FLIGHT, calls_per_second=100)
        config["sync"] = {"flows": ["payments"], "payments_schedule": "* * * * *", "lookback_minutes": 10,
                          "backoff_seconds": 0}
        (folder / f"{biller_id}.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_billers_on_one_endpoint_share_its_pool_under_the_real_scheduler(tmp_path: Path) -> None:
    billers = _billers(tmp_path / "billers")
    stack = SimStack(tmp_path / "sim", billers_dir=billers).start()
    airflow = None
    try:
        port = free_port()
        airflow_home = tmp_path / "airflow"
        env, _ = airflow_env(tmp_path, airflow_home, port, stack, None)
        env.update(ICBRIDGE_BILLERS_DIR=str(billers), ICBRIDGE_ENDPOINT_POOLS="true")
        airflow = start_airflow(env, airflow_home, port)
        deadline = time.monotonic() + 150
        api = Api(airflow.url)
        wait_healthy(api, airflow, deadline)
        api.login(ADMIN, read_admin_password(airflow_home, deadline))
        listed = subprocess.run([sys.executable, "-m", "icbridge", "pools",
                                 "--billers-dir", str(billers)], env=env, capture_output=True, text=True, check=True)
        assert POOL in listed.stdout and f"{IN_FLIGHT} slots" in listed.stdout, listed.stdout
        api.call("POST", "/api/v2/pools", json={"name": POOL, "slots": SLOTS, "description": "hosted inHance"})
        for biller_id in BILLERS:
            wait_for_dag(api, f"{biller_id}__payments", airflow, deadline)
            dag = api.call("GET", f"/api/v2/dags/{biller_id}__payments/tasks")
            [task] = dag["tasks"]
            assert (task["pool"], task["pool_slots"]) == (POOL, IN_FLIGHT)
        stack.inhance.faults.set("MakePaymentExtended", kind="latency", seconds=1.0)  # ~8 s a task: they overlap
        wanted = []
        for biller_id in BILLERS:
            guid = stack.access(biller_id).biller_guid
            for i in range(PAYMENTS):
                account = f"9{i:03d}"
                stack.inhance.add_account(biller_id, account, balance="100.00")
                wanted.append(stack.ic.add_payment(guid, account, "7001", "1.00", datetime.now(UTC), channel="Web"))
        for biller_id in BILLERS:
            unpause(api, f"{biller_id}__payments", time.monotonic() + 60)
        until = time.monotonic() + 240
        while True:
            posted = {p["reference"] for b in BILLERS for p in stack.inhance.payments(b)}
            if set(wanted) <= posted:
                break
            if time.monotonic() > until or airflow.process.poll() is not None:
                pytest.fail(f"{len(set(wanted) - posted)} payments not posted\n{airflow.log_tail()}")
            time.sleep(2)
        peak = stack.inhance.faults.peak["MakePaymentExtended"]
        assert IN_FLIGHT < peak <= SLOTS, peak  # two tasks at once (more than one task's 3), never more than 6
    finally:
        if airflow is not None:
            airflow.stop()
        stack.stop()
