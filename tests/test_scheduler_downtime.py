"""Downtime under the real scheduler (``airflow standalone``, LocalExecutor, SQLite), as ops
live through it: `demo_inhance__payments` runs every minute; Airflow is stopped for a few
intervals while IC takes payments, one more payment arrives late (its PaymentDate in a window
already read), Airflow is started again. With ``catchup`` off the scheduler creates no runs
for the missed intervals: the first run after the restart reads from the watermark and every
payment reaches the CIS exactly once; the Integration health page shows the flow; a backfill
of the whole span (completed runs re-run) sends nothing twice. The figures are printed.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from icbridge.demo import (
    ADMIN,
    TERMINAL_RUN_STATES,
    Airflow,
    Api,
    airflow_env,
    free_port,
    read_admin_password,
    session_members,
    start_airflow,
    unpause,
    wait_for_dag,
    wait_healthy,
)
from icbridge.sim.stack import SimStack
from tests.conftest import REPO

BILLER = "demo_inhance"
DAG = f"{BILLER}__payments"
OUTAGE_SECONDS = 200  # three to four 1-minute intervals with no run
STARTUP_TIMEOUT = 120
WAIT = 180


def _billers(folder: Path) -> Path:
    """The demo inHance biller, its payments DAG every minute (the others off)."""
    config = yaml.safe_load((REPO / "include" / "billers" / f"{BILLER}.yaml").read_text())
    config.pop("balance_all", None)
    config["sync"] = {"flows": ["payments"], "payments_schedule": "* * * * *", "lookback_minutes": 10,
                      "max_read_window_minutes": 5, "backoff_seconds": 0}
    folder.mkdir()
    (folder / f"{BILLER}.yaml").write_text(yaml.safe_dump(config))
    return folder


def _start(home: Path, airflow_home: Path, stack: SimStack, billers: Path) -> tuple[Airflow, Api]:
    port = free_port()
    env, _ = airflow_env(home, airflow_home, port, stack, None)
    env["ICBRIDGE_BILLERS_DIR"] = str(billers)
    airflow = start_airflow(env, airflow_home, port)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    api = Api(airflow.url)
    wait_healthy(api, airflow, deadline)
    api.login(ADMIN, read_admin_password(airflow_home, deadline))
    wait_for_dag(api, DAG, airflow, deadline)
    return airflow, api


def _posted(stack: SimStack) -> Counter[str]:
    return Counter(p["reference"] for p in stack.inhance.payments(BILLER))


def _wait_posted(stack: SimStack, guids: list[str], airflow: Airflow) -> None:
    deadline = time.monotonic() + WAIT
    while not set(guids) <= set(_posted(stack)):
        if airflow.process.poll() is not None:
            pytest.fail(f"airflow exited:\n{airflow.log_tail()}")
        if time.monotonic() > deadline:
            missing = sorted(set(guids) - set(_posted(stack)))
            pytest.fail(f"not posted within {WAIT} s: {missing}\n{airflow.log_tail()}")
        time.sleep(2)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_payments_survive_a_scheduler_outage_and_a_backfill(tmp_path: Path) -> None:
    home, airflow_home = tmp_path, tmp_path / "airflow"
    billers = _billers(tmp_path / "billers")
    stack = SimStack(home / "sim", billers_dir=billers).start()
    airflow: Airflow | None = None
    sessions: list[int] = []
    try:
        for account in ("1001", "1002"):
            stack.inhance.add_account(BILLER, account, balance="100.00")
        guid = stack.access(BILLER).biller_guid
        ic = stack.ic

        def pay(account: str, amount: str, when: datetime) -> str:
            return ic.add_payment(guid, account, "7001", amount, when, channel="Web")

        airflow, api = _start(home, airflow_home, stack, billers)
        sessions.append(airflow.sid)
        began = datetime.now(UTC)
        unpause(api, DAG, time.monotonic() + WAIT)
        before = pay("1001", "10.00", datetime.now(UTC))
        _wait_posted(stack, [before], airflow)

        # outage: the scheduler (and everything else) is down; IC takes payments meanwhile
        airflow.stop()
        down_at = datetime.now(UTC)
        during: list[str] = []
        while (datetime.now(UTC) - down_at).total_seconds() < OUTAGE_SECONDS:
            during.append(pay("1002", f"{len(during) + 1}.00", datetime.now(UTC)))
            time.sleep(20)
        late = pay("1001", "0.99", down_at - timedelta(seconds=30))  # PaymentDate in a window already read
        airflow, api = _start(home, airflow_home, stack, billers)
        sessions.append(airflow.sid)
        up_at = datetime.now(UTC)
        created = [before, *during, late]
        _wait_posted(stack, created, airflow)
        posted = _posted(stack)
        assert set(posted) == set(created) and set(posted.values()) == {1}, posted  # each exactly once

        health = api.get("/icbridge/health/")
        assert health.status_code == 200 and f'data-biller="{BILLER}" data-flow="payments"' in health.text

        # backfill the whole span, completed runs included: nothing is posted again
        body = {"dag_id": DAG, "from_date": (began - timedelta(minutes=1)).isoformat(),
                "to_date": datetime.now(UTC).isoformat(), "reprocess_behavior": "completed", "max_active_runs": 1}
        backfill = api.call("POST", "/api/v2/backfills", json=body)
        deadline = time.monotonic() + 2 * WAIT
        while True:
            state = api.call("GET", f"/api/v2/backfills/{backfill['id']}")
            runs = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns", params={"run_type": "backfill", "limit": 100})[
                "dag_runs"]
            if state["completed_at"] and runs and all(r["state"] in TERMINAL_RUN_STATES for r in runs):
                break
            assert time.monotonic() < deadline, f"backfill not done: {state}, {runs}"
            time.sleep(2)
        assert all(r["state"] == "success" for r in runs), runs
        assert _posted(stack) == posted
        print(
            f"\nscheduler outage: down {(up_at - down_at).total_seconds():.0f} s "
            f"({int((up_at - down_at).total_seconds() // 60)} or more 1-minute intervals with no run); "
            f"{len(during)} payments created while down + 1 late + 1 before = {len(created)}; "
            f"posted once each: {sum(posted.values())} CIS posts; backfill of {len(runs)} runs posted 0 more"
        )
    finally:
        if airflow is not None:
            airflow.stop()
        stack.stop()
    leftovers = {sid: session_members(sid) for sid in sessions if session_members(sid)}
    assert not leftovers, f"processes left running: {leftovers}"
