"""Issue 24: every account a finished Balance All run reports is new or still open (since when)
against the biller's previous completed weekly run, and what that run reported and this one
does not is resolved; dry and manual runs are never the week compared with."""

from __future__ import annotations

from contextlib import nullcontext
from decimal import Decimal as D

import pytest

from icbridge.reconcile.compare import Outcome
from icbridge.reconcile.engine import Summary
from icbridge.state.balance_changes import comparison, resolved
from icbridge.state.reconcile import FAILED, SUCCEEDED, ReconcileStore
from tests.support.services import postgres_schema
from tests.support.web import store_run


def _run(store: ReconcileStore, week: str, reported: dict[str, tuple[Outcome, str | None]], **kind) -> int:
    return store_run(store, "b1", week, reported, **kind)


def _marks(store: ReconcileStore, run_id: int) -> dict[str, tuple[str, object]]:
    return {r["account_number"]: (r["change"], r["open_since"]) for r in store.items(run_id, limit=1000)}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_new_still_open_since_and_resolved_against_the_previous_weekly_run(kind, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" else None
    with (nullcontext(url) if url else postgres_schema()) as url:
        store = ReconcileStore(url)
        bal, tot, miss = Outcome.BALANCE_MISMATCH, Outcome.TOTAL_MISMATCH, Outcome.MISSING_IN_CIS
        first = _run(store, "2026-W47", {"A": (bal, "5.00"), "B": (tot, "-25.00"), "C": (miss, None)})
        assert comparison(store.engine, first).previous_run_id is None
        assert {a: m[0] for a, m in _marks(store, first).items()} == {"A": "new", "B": "new", "C": "new"}
        # a dry run, a manual run and a failed weekly run between: never the week compared with
        _run(store, "2026-W48", {"Z": (bal, "1.00")}, dry=True)
        _run(store, "2026-W48", {"Z": (bal, "1.00")}, kind="manual")
        _run(store, "2026-W48", {"Z": (bal, "1.00")}, status=FAILED)
        second = _run(store, "2026-W48", {"A": (bal, "7.00"), "D": (bal, "2.00")})
        found = comparison(store.engine, second)
        assert (found.previous_run_id, found.new, found.still_open, found.resolved) == (first, 1, 1, 2)
        marks = _marks(store, second)
        started = {r.id: r.started_at for r in store.runs("b1")}
        assert marks["A"] == ("still_open", started[first]) and marks["D"] == ("new", started[second])
        gone = {r["account_number"]: (r["previous_outcome"], r["difference"]) for r in resolved(store.engine, second)}
        assert gone == {"B": ("total_mismatch", D("-25.00")), "C": ("missing_in_cis", None)}
        third = _run(store, "2026-W49", {"A": (bal, "7.00"), "D": (tot, "3.00"), "E": (bal, "1.00")})
        marks = _marks(store, third)
        assert marks["A"] == ("still_open", started[first])  # open since the first run of the chain
        assert marks["D"][0] == "still_open" and marks["E"][0] == "new"
        assert [r["previous_outcome"] for r in store.items(third, change="still_open", limit=10)] == [
            "balance_mismatch", "balance_mismatch"]
        assert store.count_items(third, change="new") == 1 and store.count_items(third, "balance_mismatch") == 2
        # a retried finish compares again and replaces, never doubles
        store.finish_run(third, Summary(), SUCCEEDED)
        assert store.count_items(third) == 3 and comparison(store.engine, third).new == 1
        store.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_baseline_is_the_latest_earlier_week_never_a_rerun_a_later_week_or_an_empty_run(kind, tmp_path):
    """Weeks order runs, not start times: a week cleared and run again after the next one is
    compared with the week before it; a rerun of this week is never "last week"; a run that
    checked 0 accounts is never a baseline."""
    url = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" else None
    with (nullcontext(url) if url else postgres_schema()) as url:
        store = ReconcileStore(url)
        bal = Outcome.BALANCE_MISMATCH
        w46 = _run(store, "2026-W46", {"A": (bal, "1.00")})
        _run(store, "2026-W47", {"A": (bal, "1.00")}, status=FAILED)
        w48 = _run(store, "2026-W48", {"A": (bal, "1.00"), "C": (bal, "3.00")})
        w47 = _run(store, "2026-W47", {"A": (bal, "1.00"), "B": (bal, "2.00")})  # cleared late, after W48
        assert comparison(store.engine, w47).previous_run_id == w46  # the week before it, not W48
        w49 = _run(store, "2026-W49", {"A": (bal, "1.00"), "C": (bal, "3.00")})
        assert comparison(store.engine, w49).previous_run_id == w48
        assert _marks(store, w49)["C"][0] == "still_open" and resolved(store.engine, w49) == []
        again = _run(store, "2026-W49", {"A": (bal, "1.00"), "N": (bal, "9.00")})  # a rerun of W49
        assert comparison(store.engine, again).previous_run_id == w48 and _marks(store, again)["N"][0] == "new"
        assert [r.week for r in store.weekly("b1")] == ["2026-W46", "2026-W47", "2026-W48", "2026-W49"]
        assert store.weekly("b1")[-1].id == again  # of two runs of a week, the one that finished last
        empty = _run(store, "2026-W50", {})
        assert comparison(store.engine, empty).resolved == 2  # what it reports against W49 (a warning on the page)
        w51 = _run(store, "2026-W51", {"A": (bal, "1.00")})
        assert comparison(store.engine, w51).previous_run_id == again  # the empty W50 is no baseline
        started = {r.id: r.started_at for r in store.runs("b1")}
        assert _marks(store, w51)["A"] == ("still_open", started[w46])  # the chain from W46 on
        store.dispose()
