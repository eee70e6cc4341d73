"""Watermark rules (icbridge.state.watermarks, icbridge.flows.windows) on SQLite and PostgreSQL,
the DST manual-run interval, and the three sync flows run watermarked against the IC, inHance
and AUS simulators: the lookback overlap and a catch-up after downtime never repeat a CIS call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from icbridge.config.biller import BillerConfig
from icbridge.flows.balances import run_balances
from icbridge.flows.customer_changes import run_customer_changes
from icbridge.flows.payments import run_payments
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport
from icbridge.flows.windows import last_complete_period, plan_read, run_watermarked, split
from icbridge.state.watermarks import DoneItem, SyncItems, Watermarks, item_key
from icbridge.vendors import vendor
from tests.support.services import postgres_schema
from tests.support.sync_world import POLICY, T0, World

H = timedelta(hours=1)
M = timedelta(minutes=1)
NY = ZoneInfo("America/New_York")


def _biller(cis: str = "inhance", **sync) -> BillerConfig:
    return BillerConfig.model_validate({
        "biller_id": f"t_{cis}", "bid": "321", "name": "T", "cis": cis, "ic_conn_id": "t_ic",
        "cis_service": {"conn_id": "t_cis"}, "sync": {"backoff_seconds": 0, **sync},
    })


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def store(state_url):
    marks = Watermarks(state_url)
    yield marks
    marks.dispose()


# --- the state tables ---------------------------------------------------------------------------


def test_watermark_only_moves_forward_and_keeps_time_zones(store):
    assert store.get("b", "payments") is None
    assert store.advance("b", "payments", T0, "r1") == T0
    assert store.advance("b", "payments", T0 - H, "backfill") == T0  # never backwards
    later = (T0 + H).astimezone(NY)  # any zone in, UTC out
    assert store.advance("b", "payments", later, "r2") == T0 + H
    mark = store.get("b", "payments")
    assert mark.covered_through == T0 + H and mark.covered_through.tzinfo is not None
    assert mark.covered_by_run == "r2"
    assert store.covered_through("b", "balances") is None  # per (biller, flow)
    assert store.covered_through("other", "payments") is None


def test_run_outcomes_are_kept_for_the_health_page(store):
    store.record_run("b", "balances", run_id="r1", ok=False, message="CIS down")
    mark = store.get("b", "balances")
    assert (mark.covered_through, mark.last_outcome, mark.last_message, mark.last_success_at) == (
        None, "failed", "CIS down", None)  # no covered point invented for a run that covered nothing
    store.record_run("b", "balances", run_id="r2", ok=True, message=None)
    mark = store.get("b", "balances")
    assert mark.last_outcome == "success" and mark.last_success_at is not None and mark.last_run_id == "r2"
    assert [(m.biller_id, m.flow) for m in store.all()] == [("b", "balances")]


def test_sync_items_remember_keys_once_and_the_latest_applied(state_url):
    items = SyncItems(state_url)
    try:
        k1, k2 = item_key("1001", "paperless", "True", T0), item_key("1001", "paperless", "False", T0 + M)
        assert item_key("1001", "paperless", "True", T0.astimezone(NY)) == k1  # the same instant, any zone
        done = [DoneItem(k1, "1001", "paperless", T0, "applied"), DoneItem(k2, "1001", "paperless", T0 + M, "not_sent")]
        assert items.mark_done("b", "customer_changes", done, "r1") == 2
        assert items.mark_done("b", "customer_changes", done, "r2") == 0  # once
        assert items.done("b", "customer_changes", [k1, k2, "other"]) == {k1, k2}
        assert items.done("b", "balances", [k1]) == set()  # per flow
        assert items.latest("b", "customer_changes", ["1001", "1002"], "paperless", outcomes=("applied",)) == {
            "1001": T0}
    finally:
        items.dispose()


# --- what a run reads -------------------------------------------------------------------------


def test_the_first_run_reads_its_own_interval():
    own = Interval(T0, T0 + 15 * M)
    plan = plan_read(own, None, lookback=2 * H, max_window=H)
    assert plan.span == own and plan.windows == (own,) and plan.gap == timedelta(0)


def test_a_run_reads_from_the_watermark_minus_the_lookback():
    own = Interval(T0, T0 + 15 * M)
    plan = plan_read(own, T0, lookback=2 * H, max_window=H)
    assert plan.span == Interval(T0 - 2 * H, own.end) and plan.gap == timedelta(0)
    assert [w.end - w.start for w in plan.windows] == [H, H, 15 * M]


def test_after_downtime_the_gap_is_read_in_bounded_windows():
    own = Interval(T0 + 12 * H, T0 + 12 * H + 15 * M)
    plan = plan_read(own, T0, lookback=2 * H, max_window=H)
    assert plan.span.start == T0 - 2 * H and plan.gap == 12 * H
    assert len(plan.windows) == 15 and all(w.end - w.start <= H for w in plan.windows)
    assert plan.windows[0].start == plan.span.start and plan.windows[-1].end == own.end
    assert all(a.end == b.start for a, b in zip(plan.windows, plan.windows[1:], strict=False))


def test_a_backfill_of_an_old_interval_reads_its_own_interval_and_the_lookback():
    own = Interval(T0 - 48 * H, T0 - 48 * H + 15 * M)
    plan = plan_read(own, T0, lookback=30 * M, max_window=H)
    assert plan.span == Interval(own.start - 30 * M, own.end) and plan.gap == timedelta(0)


def test_split_rejects_a_non_positive_window():
    with pytest.raises(ValueError):
        split(Interval(T0, T0 + H), timedelta(0))


# --- DST manual runs --------------------------------------------------------------------------


def test_a_manual_run_on_a_spring_forward_day_covers_the_last_complete_period():
    at = datetime(2026, 3, 8, 12, 30, tzinfo=NY)  # Airflow 3.3.2 gives [07:00, 07:00) UTC here
    period = last_complete_period("0 2 * * *", NY, at)
    assert period.start == datetime(2026, 3, 7, 2, 0, tzinfo=NY)  # 07:00 UTC
    assert period.end == datetime(2026, 3, 8, 3, 0, tzinfo=NY)  # 02:00 does not exist that day: 03:00 EDT
    assert period.end - period.start == 24 * H  # non-empty: the skipped hour is not lost either
    assert last_complete_period("30 2 * * *", NY, at).end - last_complete_period("30 2 * * *", NY, at).start == 24 * H


def test_last_complete_period_on_ordinary_and_fall_back_days():
    at = datetime(2026, 4, 1, 10, 7, tzinfo=UTC)
    assert last_complete_period("*/15 * * * *", NY, at) == Interval(at.replace(minute=0) - 15 * M,
                                                                     at.replace(minute=0))
    fall = last_complete_period("0 2 * * *", NY, datetime(2026, 11, 1, 12, 0, tzinfo=NY))
    assert fall.end - fall.start == 25 * H
    on_the_fire = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
    assert last_complete_period("0 * * * *", NY, on_the_fire).end == on_the_fire


# --- run_watermarked: advance, hold, never back, lag ------------------------------------------


class _Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def _work(done_through=None, fail: bool = False, seen: list | None = None):
    def work(plan):
        if seen is not None:
            seen.append(plan)
        report = SyncReport("payments", "t_inhance", plan.span)
        report.done_through = done_through
        if fail:
            raise SyncFailed(report, "one change did not reach the CIS", retry=True)
        return report
    return work


def test_the_watermark_advances_to_the_run_end_when_all_succeeded(store):
    own = Interval(T0, T0 + 15 * M)
    seen: list = []
    report = run_watermarked(biller=_biller(), flow="payments", own=own, store=store, run_id="r1",
                             work=_work(seen=seen), clock=_Clock(own.end + M))
    assert report.covered_through == own.end == store.covered_through("t_inhance", "payments")
    nxt = Interval(own.end, own.end + 15 * M)
    run_watermarked(biller=_biller(), flow="payments", own=nxt, store=store, run_id="r2", work=_work(seen=seen),
                    clock=_Clock(nxt.end + M))
    assert seen[1].span == Interval(own.end - 2 * H, nxt.end)  # the default lookback: 2 h
    assert store.get("t_inhance", "payments").last_outcome == "success"


def test_a_failure_holds_the_watermark_where_the_first_item_failed(store):
    store.advance("t_inhance", "customer_changes", T0)
    own = Interval(T0, T0 + H)
    with pytest.raises(SyncFailed, match="did not reach the CIS"):
        run_watermarked(biller=_biller(), flow="customer_changes", own=own, store=store, run_id="r1",
                        work=_work(done_through=T0 + 20 * M, fail=True), clock=_Clock(own.end + M))
    assert store.covered_through("t_inhance", "customer_changes") == T0 + 20 * M
    assert store.get("t_inhance", "customer_changes").last_outcome == "failed"


def test_an_error_before_anything_was_done_leaves_the_watermark(store):
    store.advance("t_inhance", "payments", T0)

    def broken(plan):
        raise ConnectionError("IC ListPayments refused")

    with pytest.raises(ConnectionError):
        run_watermarked(biller=_biller(), flow="payments", own=Interval(T0, T0 + 15 * M), store=store,
                        run_id="r1", work=broken)
    assert store.covered_through("t_inhance", "payments") == T0
    assert "refused" in store.get("t_inhance", "payments").last_message


def test_a_backfill_never_moves_the_watermark_back_and_is_not_judged_for_lag(store):
    store.advance("t_inhance", "payments", T0)
    old = Interval(T0 - 30 * 24 * H, T0 - 30 * 24 * H + 15 * M)
    report = run_watermarked(biller=_biller(), flow="payments", own=old, store=store, run_id="backfill",
                             work=_work(), clock=_Clock(T0 + 5 * M))
    assert report.covered_through == T0 == store.covered_through("t_inhance", "payments")


def test_a_live_run_still_behind_fails_naming_the_gap(store):
    store.advance("t_inhance", "balances", T0)
    own = Interval(T0 + 5 * H, T0 + 5 * H + 15 * M)
    with pytest.raises(SyncFailed) as failed:  # it covered only up to an account still deferred
        run_watermarked(biller=_biller(max_lag_minutes=60), flow="balances", own=own, store=store, run_id="r9",
                        work=_work(done_through=T0 + 10 * M), clock=_Clock(own.end + M))
    message = str(failed.value)
    assert "balances of t_inhance is 5 h 6 min behind (bound 60 min)" in message
    assert f"everything up to {(T0 + 10 * M).isoformat()} is done" in message
    assert not failed.value.retry  # a retry would not help: a person looks
    assert store.covered_through("t_inhance", "balances") == T0 + 10 * M  # the work it could do is kept
    report = run_watermarked(biller=_biller(max_lag_minutes=60), flow="balances", own=own, store=store,
                             run_id="r10", work=_work(), clock=_Clock(own.end + M))  # caught up: fine
    assert report.covered_through == own.end and report.counts["caught_up_gap"] == 1


# --- the flows, watermarked, against the simulators ------------------------------------------


def _run(world: World, store: Watermarks, items: SyncItems, flow: str, own: Interval, biller: BillerConfig,
         run_id: str, **kw):
    def work(plan):
        cis = vendor(biller.cis).service(world.client(biller.cis))
        common = {"biller": biller, "ic": world.ic_client(), "cis": cis,
                  "interval": plan.span, "windows": plan.windows, "policy": POLICY}
        if flow == "payments":
            return run_payments(**common, ledger=world.ledger, run_id=f"{run_id}#try1",
                                reported_before=min(plan.own.start, plan.watermark) if plan.watermark else None)
        if flow == "balances":
            return run_balances(**common, ledger=world.ledger, items=items, run_id=run_id)
        return run_customer_changes(**common, items=items, run_id=run_id)

    return run_watermarked(biller=biller, flow=flow, own=own, store=store, run_id=run_id, work=work,
                           clock=kw.pop("clock", _Clock(own.end + M)))


@pytest.fixture
def wm(world):
    store, items = Watermarks(world.state_url), SyncItems(world.state_url)
    yield store, items
    store.dispose()
    items.dispose()


@pytest.mark.parametrize("cis", ["inhance", "aus"])
def test_payments_after_downtime_and_a_late_payment_are_each_posted_once(world, wm, cis):
    store, items = wm
    biller = _biller(cis)
    slot = [Interval(T0 + i * 15 * M, T0 + (i + 1) * 15 * M) for i in range(16)]
    first = world.pay("1001", when=slot[0].start + 5 * M)
    report = _run(world, store, items, "payments", slot[0], biller, "r0")
    assert report.counts == {"posted": 1}
    # down for slots 1..9: payments arrive in IC, nobody reads them
    gap = [world.pay("1002", invoice="7002", amount=f"{10 + i}.00", when=slot[i].start + 3 * M) for i in range(1, 10)]
    report = _run(world, store, items, "payments", slot[10], biller, "r10")
    assert report.counts == {"posted": 9, "already_posted": 1, "caught_up_gap": 1}
    # a late payment: recorded in IC now, with a PaymentDate 40 minutes back (read already)
    late = world.pay("1001", amount="7.00", when=slot[10].start - 40 * M)
    report = _run(world, store, items, "payments", slot[11], biller, "r11")
    assert report.counts["posted"] == 1
    refs = [p["reference"] for p in world.sim(cis).payments(f"t_{cis}")]
    assert sorted(refs) == sorted([first, *gap, late])  # each exactly once
    # a backfill of the whole span and a cleared run send nothing again
    for i, own in enumerate(slot[:12]):
        again = _run(world, store, items, "payments", own, biller, f"backfill{i}")
        assert "posted" not in again.counts
    assert len(world.sim(cis).payments(f"t_{cis}")) == 11
    assert store.covered_through(biller.biller_id, "payments") == slot[11].end


def test_changes_overlap_sends_nothing_twice_and_a_late_older_change_never_undoes_a_newer(world, wm):
    store, items = wm
    biller = _biller("inhance")
    hour = [Interval(T0 + i * H, T0 + (i + 1) * H) for i in range(6)]
    world.ic.sim.add_change(world.guid, "1001", "Paperless", "True", hour[0].start + 10 * M)
    assert _run(world, store, items, "customer_changes", hour[0], biller, "r0").counts == {"applied_paperless": 1}
    world.ic.sim.add_change(world.guid, "1002", "AutoPay", "True", hour[1].start + 5 * M)
    report = _run(world, store, items, "customer_changes", hour[1], biller, "r1")
    assert report.counts == {"already_handled": 1, "applied_autopay": 1}  # hour 0 re-read, not re-sent
    # late: an older Paperless=False for 1001 shows up in the lookback; it must not undo True
    world.ic.sim.add_change(world.guid, "1001", "Paperless", "False", hour[0].start + 5 * M)
    report = _run(world, store, items, "customer_changes", hour[2], biller, "r2")
    assert report.counts == {"already_handled": 2, "superseded_earlier": 1}
    assert world.inhance.account("t_inhance", "1001")["paperless"] is True
    assert len(world.inhance.changes("t_inhance")) == 2


def test_a_change_that_failed_holds_the_watermark_and_only_it_is_sent_again(world, wm):
    store, items = wm
    biller = _biller("inhance")
    hour = [Interval(T0 + i * H, T0 + (i + 1) * H) for i in range(3)]
    world.ic.sim.add_change(world.guid, "1001", "AutoPay", "True", hour[0].start + 20 * M)
    world.ic.sim.add_change(world.guid, "1002", "Paperless", "True", hour[0].start + 30 * M)
    world.inhance.faults.set("SetAutopay", kind="drop")
    with pytest.raises(SyncFailed):
        _run(world, store, items, "customer_changes", hour[0], biller, "r0")
    assert store.covered_through("t_inhance", "customer_changes") == hour[0].start + 20 * M
    world.inhance.faults.clear("SetAutopay")
    report = _run(world, store, items, "customer_changes", hour[1], biller, "r1")
    assert report.counts == {"applied_autopay": 1, "already_handled": 1, "caught_up_gap": 1}
    assert store.covered_through("t_inhance", "customer_changes") == hour[1].end
    assert [c["field"] for c in world.inhance.changes("t_inhance")] == ["paperless", "autopay"]


def test_balances_refresh_an_account_once_per_activity(world, wm):
    store, items = wm
    biller = _biller("inhance")
    slot = [Interval(T0 + i * 15 * M, T0 + (i + 1) * 15 * M) for i in range(4)]
    world.touch("1001", minute=1)
    assert _run(world, store, items, "balances", slot[0], biller, "r0").counts == {"updated": 1}
    calls = len(world.inhance.received("t_inhance"))
    report = _run(world, store, items, "balances", slot[1], biller, "r1")  # overlap: no new activity
    assert report.counts == {"already_refreshed": 1}
    assert len(world.inhance.received("t_inhance")) == calls  # no CIS call repeated (nor the IC update after it)
    world.ic.sim.add_change(world.guid, "1001", "Phone", "555-0102", slot[2].start + M)
    assert _run(world, store, items, "balances", slot[2], biller, "r2").counts == {"updated": 1}


def test_balances_hold_the_watermark_for_a_deferred_account_until_its_payment_is_posted(world, wm):
    store, items = wm
    biller = _biller("inhance")
    slot = [Interval(T0 + i * 15 * M, T0 + (i + 1) * 15 * M) for i in range(4)]
    store.advance("t_inhance", "balances", slot[0].start)
    world.pay("1001", when=slot[0].start + 5 * M)
    report = _run(world, store, items, "balances", slot[0], biller, "r0")
    assert report.counts == {"deferred_payment_not_posted": 1}
    assert store.covered_through("t_inhance", "balances") == slot[0].start + 5 * M
    _run(world, store, items, "payments", slot[0], biller, "p0")
    report = _run(world, store, items, "balances", slot[1], biller, "r1")
    assert report.counts == {"updated": 1, "caught_up_gap": 1}  # read again from where it was held
    assert store.covered_through("t_inhance", "balances") == slot[1].end


def test_handled_items_far_behind_the_watermark_are_forgotten(state_url):
    store, items = Watermarks(state_url), SyncItems(state_url)
    try:
        old, recent = item_key("old"), item_key("recent")
        items.mark_done("t_inhance", "customer_changes", [
            DoneItem(old, "1001", "autopay", T0 - 40 * 24 * H, "applied"),
            DoneItem(recent, "1001", "autopay", T0 - 2 * H, "applied")], "r0")
        own = Interval(T0, T0 + H)
        run_watermarked(biller=_biller(items_retention_days=35), flow="customer_changes", own=own, store=store,
                        run_id="r1", work=_work(), clock=_Clock(own.end + M), items=items)
        assert items.done("t_inhance", "customer_changes", [old, recent]) == {recent}
    finally:
        store.dispose()
        items.dispose()


def test_a_window_whose_answer_left_an_item_out_holds_the_watermark(world, wm):
    """IC listed a payment that breaks the answer contract (left out, never posted with a 0):
    the run fails, and the watermark stops at the start of that window so it is read again."""
    from icbridge.soap.invoice_cloud import Listing

    store, _ = wm
    biller = _biller("inhance")
    store.advance("t_inhance", "payments", T0)
    real = world.ic_client()
    broken_window = T0 + H

    class Ic:
        def list_payments(self, start, end, channel=None):
            listed = real.list_payments(start, end)
            return Listing(listed, ["Payment 2: PaymentAmount missing"] if start == broken_window else [])

    good = world.pay("1001", when=T0 + 2 * H + 5 * M)
    own = Interval(T0 + 2 * H, T0 + 2 * H + 15 * M)

    def work(plan):
        cis = vendor("inhance").service(world.client("inhance"))
        return run_payments(biller=biller, ic=Ic(), cis=cis, ledger=world.ledger,
                            interval=plan.span, windows=plan.windows, run_id="r1#try1", policy=POLICY)

    with pytest.raises(SyncFailed, match="break the answer contract"):
        run_watermarked(biller=biller, flow="payments", own=own, store=store, run_id="r1", work=work,
                        clock=_Clock(own.end + M))
    assert store.covered_through("t_inhance", "payments") == broken_window
    assert [p["reference"] for p in world.sim("inhance").payments("t_inhance")] == [good]  # the rest still posted
