"""What Balance All's change marks cost (issue 24): storing and finishing a run of N reported
accounts against a baseline of N, then the run page's queries and the download's rows.

    python benchmarks/bench_balance_changes.py [--items 100000] [--db sqlite|postgres]

PostgreSQL (127.0.0.1:5432, database ``test``, a fresh schema) is measured the way production
meets it: the tables are analysed once with four earlier weeks in them and never again, so the
run being read is newer than the planner's statistics (autovacuum has not caught up). Prints one
line per step (seconds) and the peak RSS; docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]

from icbridge.reconcile.compare import Item, Outcome  # noqa: E402
from icbridge.reconcile.engine import Summary  # noqa: E402
from icbridge.state.reconcile import SUCCEEDED, ReconcileStore  # noqa: E402


def _timed(label: str, step) -> object:
    start = time.perf_counter()
    result = step()
    print(f"{label:<34} {time.perf_counter() - start:8.2f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.db == "postgres":
        from tests.support.services import postgres_schema

        where = postgres_schema()
    else:
        where = contextlib.nullcontext(f"sqlite:///{tempfile.mkdtemp(prefix='icb-bench-')}/state.db")
    with where as url:
        store = ReconcileStore(url)

        def run(week: int, offset: int, timed: bool = False) -> int:
            run_id = store.start_run("b1", f"2026-W{week}", dag_run_id=f"scheduled__{week}", dry_run=False,
                                     corrections_allowed=False, error_threshold_pct=2)
            summary = Summary()
            for start in range(0, args.items, 10_000):  # the flow stores its items in batches
                batch = [Item(f"{i + offset:09d}", f"I{i}", Outcome.BALANCE_MISMATCH, difference=Decimal("1.23"))
                         for i in range(start, min(args.items, start + 10_000))]
                for item in batch:
                    summary.add(item)
                if timed and start == 0:
                    _timed("add_items, first 10,000 (+baseline)", lambda b=batch: store.add_items(run_id, b))
                else:
                    store.add_items(run_id, batch)
            step = lambda: store.finish_run(run_id, summary, SUCCEEDED)  # noqa: E731
            _timed(f"finish_run W{week} (resolved, counts)", step) if timed else step()
            return run_id

        for week in range(40, 44):
            run(week, week * 100)
        if args.db == "postgres":
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE icb_balance_items")
        run_id = run(44, 4_400, timed=True)  # against W43: 100 new, the rest still open, 100 resolved
        _timed("count_items(change='new')", lambda: store.count_items(run_id, change="new"))
        _timed("a run page, 100 rows at offset 10k", lambda: store.items(run_id, offset=10_000, limit=100))
        _timed("... sorted by open_since", lambda: store.items(run_id, sort="open_since", offset=10_000, limit=100))
        _timed("every row (the CSV / XLSX source)", lambda: sum(1 for _ in store.iter_items(run_id)))
        store.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB ({args.items:,} items, {args.db})")


if __name__ == "__main__":
    main()
