"""Downtime, late data and DST, with Airflow running the DAGs (dag.test()) against the IC,
inHance and AUS simulators: the runs after an outage cover the gap from the watermark, a late
payment (PaymentDate in a window already read) is posted, every payment is posted exactly
once, and re-running or backfilling the whole span sends nothing twice.

Figures (asserted below): payments - a 2 h 15 min outage (9 runs of 15 min missed) with 18
payments created in it, plus 1 before and 1 late; 20 payments, each posted once, 0 after a
re-run of all 12 intervals. Customer changes - a 3 h outage, 6 changes in it, each applied once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from icbridge.state.watermarks import Watermarks
from tests.support.dags import task_states

pytestmark = pytest.mark.usefixtures("airflow_db")
M, H = timedelta(minutes=1), timedelta(hours=1)


def _covered(cis: str, flow: str):
    store = Watermarks(os.environ["ICBRIDGE_STATE_DB_URL"])  # set by the dag_env fixture
    try:
        return store.covered_through(f"t_{cis}", flow)
    finally:
        store.dispose()


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_after_downtime_and_a_late_payment_each_posted_once(sync_world, cis):
    start = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    slot = [start + i * 15 * M for i in range(12)]
    dag = sync_world.dag(cis, "payments")
    created = [sync_world.ic.add_payment(sync_world.guid, "1001", "7001", "11.00", slot[0] + 2 * M)]
    assert str(sync_world.run(dag, slot[0]).state) == "success"
    # the scheduler is down for slots 1..9 (2 h 15 min): IC takes 2 payments in each
    for i in range(1, 10):
        created.append(sync_world.ic.add_payment(sync_world.guid, "1001", "7001", f"{i}.01", slot[i] + 1 * M))
        created.append(sync_world.ic.add_payment(sync_world.guid, "1002", "7002", f"{i}.02", slot[i] + 14 * M))
    assert len(sync_world.sims[cis].payments(f"t_{cis}")) == 1  # nothing ran
    run = sync_world.run(dag, slot[10])  # back up: catchup is off, so the next run is the current interval
    assert str(run.state) == "success", task_states(run)
    assert _covered(cis, "payments") == slot[11]
    # late: IC records now a payment made during the outage (its window was read already)
    created.append(sync_world.ic.add_payment(sync_world.guid, "1002", "7002", "99.99", slot[5] + 7 * M))
    assert str(sync_world.run(dag, slot[11]).state) == "success"
    posted = [p["reference"] for p in sync_world.sims[cis].payments(f"t_{cis}")]
    assert len(created) == 20 and sorted(posted) == sorted(created)  # every payment exactly once
    # re-run (backfill) every interval of the span: nothing is sent twice, the watermark stays
    for moment in slot:
        assert str(sync_world.run(dag, moment).state) == "success"
    assert len(sync_world.sims[cis].payments(f"t_{cis}")) == 20
    assert _covered(cis, "payments") == slot[11] + 15 * M


def test_customer_changes_after_downtime_each_applied_once(sync_world):
    start = datetime(2026, 5, 5, 6, 0, tzinfo=UTC)
    hour = [start + i * H for i in range(5)]
    dag = sync_world.dag("inhance", "customer_changes")
    sync_world.ic.add_change(sync_world.guid, "1001", "Paperless", "True", hour[0] + 5 * M)
    assert str(sync_world.run(dag, hour[0], H).state) == "success"
    for i in range(1, 4):  # down for hours 1..3
        sync_world.ic.add_change(sync_world.guid, "1001", "AutoPay", "True" if i % 2 else "False", hour[i] + 10 * M)
        sync_world.ic.add_change(sync_world.guid, "1002", "Paperless", "True" if i % 2 else "False", hour[i] + 20 * M)
    assert str(sync_world.run(dag, hour[4], H).state) == "success"
    applied = [(c["account_number"], c["field"], c["value"]) for c in sync_world.sims["inhance"].changes("t_inhance")]
    # the last change of each kind per account is what the CIS must hold; the older ones are superseded
    assert sorted(applied) == [("1001", "autopay", True), ("1001", "paperless", True), ("1002", "paperless", True)]
    for moment in hour:
        assert str(sync_world.run(dag, moment, H).state) == "success"
    assert len(sync_world.sims["inhance"].changes("t_inhance")) == 3


def test_a_manual_run_on_a_dst_day_covers_the_last_complete_period(sync_world):
    ny = ZoneInfo("America/New_York")
    dag = sync_world.dag("inhance", "customer_changes", customer_changes_schedule="0 2 * * *")
    sync_world.ic.add_change(sync_world.guid, "1001", "AutoPay", "True", datetime(2026, 3, 7, 12, 0, tzinfo=ny))
    run = dag.test(logical_date=datetime(2026, 3, 8, 12, 30, tzinfo=ny))
    assert run.data_interval_start == run.data_interval_end  # what Airflow 3.3.2 gives this manual run
    assert str(run.state) == "success", task_states(run)
    assert [c["field"] for c in sync_world.sims["inhance"].changes("t_inhance")] == ["autopay"]
    assert _covered("inhance", "customer_changes") == datetime(2026, 3, 8, 3, 0, tzinfo=ny)
