"""The Balance All pages: runs per biller (``/balance-all/``), one run with its charts and
items (``/balance-all/runs/{id}``), and its items as CSV or XLSX, each behind the caller's
right to read the biller's Balance All DAG (icbridge.web.auth)."""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from icbridge.config.biller import BillerConfig, default_billers_dir, load_biller
from icbridge.reconcile.charts import RatePoint, histogram_svg, mismatch_rate_svg, trend_svg
from icbridge.reconcile.compare import OUTCOME_LABELS, OUTCOMES, Rules
from icbridge.reconcile.export import MONEY_COLUMNS, csv_chunks, summary_rows, write_xlsx
from icbridge.state.balance_changes import CHANGE_LABELS, Comparison, comparison, resolved
from icbridge.state.reconcile import SORTABLE, ReconcileStore, RunRow
from icbridge.web.auth import readable_billers, require_biller
from icbridge.web.common import USER, cell, get_store, render, user_name
from icbridge.web.reader import coverage_warning, date_local, delta, money, run_kind, week_ending, when_local

router = APIRouter()
PER_PAGE_DEFAULT, PER_PAGE_MAX = 100, 1000
OUTCOME_NAMES = [str(o) for o in OUTCOMES]
STORED_OUTCOMES = [o for o in OUTCOME_NAMES if o != "match"]
BALANCE_COLUMNS = ("account_number", "invoice_number", "outcome", "change", "ic_balance_due", "cis_balance",
                   "difference")
FUTURE_COLUMNS = ("ic_total_amount_due", "cis_future_balance", "total_difference")  # inHance version 2
CASH_ONLY_COLUMNS = ("ic_block_cc", "ic_block_eft", "cis_cash_only")  # AUS rule 7
RESOLVED_SHOWN = 200
ITEM_HEADERS = {
    "account_number": "Account", "invoice_number": "Invoice", "outcome": "Outcome", "change": "Since last week",
    "ic_balance_due": "IC balance", "cis_balance": "CIS balance", "difference": "Difference",
    "ic_total_amount_due": "IC total due", "cis_future_balance": "CIS future balance",
    "total_difference": "Total difference", "ic_block_cc": "IC blocks cards", "ic_block_eft": "IC blocks ACH",
    "cis_cash_only": "CIS cash only", "corrected": "Corrected", "message": "Message",
}
"""Column headers people read on the run page (the code names stay in URLs, CSV and XLSX)."""


def run_labels(runs: list) -> list[str]:
    """Chart labels as analysts read weeks: the Sunday that ends the run's week, ``11/22``; a week
    with a second run (this run beside the weekly one) adds its kind, ``11/29 dry run``."""
    weeks = Counter(r.week for r in runs)
    labels = []
    for r in runs:
        ending = week_ending(r.week).removeprefix("week ending ")
        label = ending[:5] if ending != r.week else r.week  # MM/DD; a week it cannot read stays as stored
        labels.append(label if weeks[r.week] == 1 else f"{label} {run_kind(r)}")
    return labels


READER = {"week_ending": week_ending, "run_kind": run_kind, "as_money": money,
          "delta": delta, "change_labels": CHANGE_LABELS}
"""The reader's-form helpers every Balance All page gets (icbridge.web.reader)."""


def _summary_for_page(run: RunRow, zone: ZoneInfo | None) -> list[tuple[str, Any]]:
    """The run's summary (the XLSX's first sheet) in the reader's form: money as $, the week
    as its ending Sunday, times in the biller's zone, the run's kind."""
    shown = {"Week": f"{week_ending(run.week)} ({run.week})", "Started": when_local(run.started_at, zone),
             "Finished": when_local(run.finished_at, zone), "Dry run": run_kind(run)}
    rows = []
    for label, value in summary_rows(run):
        if label == "Dry run":
            label = "Kind"
        rows.append((label, shown.get(label if label != "Kind" else "Dry run",
                                      money(value) if isinstance(value, Decimal) else value)))
    return rows


def _biller(biller_id: str) -> BillerConfig | None:
    """The biller's file, None when it is gone or invalid (the report stays readable)."""
    try:
        return load_biller(default_billers_dir() / f"{biller_id}.yaml")
    except Exception:
        return None


def _rules(biller: BillerConfig | None) -> Rules | None:
    """The biller's Balance All comparisons, None when they cannot be told (file gone or
    incomplete: every column is shown)."""
    if biller is None:
        return None
    try:
        return biller.vendor().balance_rules(biller)
    except ValueError:
        return None


def item_columns(rules: Rules | None, run: RunRow | None = None) -> list[str]:
    """The run page's columns for a biller's comparisons: the total-due columns for inHance
    version 2, the payment blocks for AUS (all of them when the rules are unknown), and any
    the run's own outcomes need whatever the biller file says now (a stored total-due or
    payment-block mismatch always shows its values)."""
    counts = run.counts if run is not None else {}
    columns = list(BALANCE_COLUMNS)
    if rules is None or rules.future_balance or counts.get("total_mismatch"):
        columns += FUTURE_COLUMNS
    if rules is None or rules.cash_only or counts.get("flags_mismatch"):
        columns += CASH_ONLY_COLUMNS
    return [*columns, "corrected", "message"]


def _run_or_404(store: ReconcileStore, run_id: int) -> RunRow:
    run = store.run(run_id)
    if run is None:
        raise HTTPException(404, f"no Balance All run {run_id}")
    return run


def _check_query(outcome: str | None, sort: str, change: str | None = None) -> str | None:
    if outcome and outcome not in OUTCOME_NAMES:
        raise HTTPException(400, f"outcome must be one of {', '.join(OUTCOME_NAMES)}")
    if sort not in SORTABLE:
        raise HTTPException(400, f"sort must be one of {', '.join(SORTABLE)}")
    if change and change not in ("new", "still_open"):
        raise HTTPException(400, "change must be new or still_open (resolved accounts are listed apart)")
    return outcome or None


def _run_items_query(run_id: int, outcome: str | None, sort: str, user: Any, change: str | None = None
                     ) -> tuple[ReconcileStore, RunRow, str | None]:
    """What every run page and download starts with: the store, the run (404), the user's right
    to read its biller's Balance All DAG (403), the checked filter (400)."""
    store = get_store()
    run = _run_or_404(store, run_id)
    require_biller(user, run.biller_id, ("balance_all",))
    return store, run, _check_query(outcome, sort, change)


def week_against_week(store: ReconcileStore, biller_id: str) -> dict[str, Any] | None:
    """The biller's latest completed weekly run against its baseline (the weekly run of the
    week before, icbridge.state.balance_changes), the change counts, a coverage warning, and
    the mismatches of its last 12 weekly runs (the trend); None before the first weekly run."""
    weekly = store.weekly(biller_id, weeks=12)
    if not weekly:
        return None
    latest = weekly[-1]
    changes = comparison(store.engine, latest.id)
    previous = store.run(changes.previous_run_id) if changes and changes.previous_run_id else None
    return {"latest": latest, "previous": previous, "changes": changes,
            "warning": coverage_warning(latest, previous),
            "trend": trend_svg([(week_ending(r.week), r.mismatches) for r in weekly])}


@router.get("/", include_in_schema=False)
@router.get("/balance-all", include_in_schema=False)
def to_index(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + "/balance-all/", status_code=307)


@router.get("/balance-all/", response_class=HTMLResponse)
def index(biller: str | None = None, user: Any = USER) -> HTMLResponse:
    store = get_store()
    if biller:
        require_biller(user, biller, ("balance_all",))
    billers = [biller] if biller else store.billers()
    allowed = readable_billers(user, billers, ("balance_all",))
    groups = [(b, store.runs(b, limit=60)) for b in billers if b in allowed]
    groups = [(b, runs) for b, runs in groups if runs]
    configs = {b: _biller(b) for b, _ in groups}  # the billers shown only: cost never grows with the fleet
    zones = {b: c.tz for b, c in configs.items() if c is not None}
    warnings: dict[int, str | None] = {}
    for _, runs in groups:  # newest first: each run against the next older weekly run
        for i, run in enumerate(runs):
            older = next((r for r in runs[i + 1:] if run_kind(r) == "weekly" and r.status == "succeeded"), None)
            warnings[run.id] = coverage_warning(run, older)
    return render(
        "index.html",
        groups=groups,
        weeks=[(b, found) for b, _ in groups if (found := week_against_week(store, b)) is not None],
        warning=warnings.get,
        outcomes=OUTCOME_NAMES,
        labels=OUTCOME_LABELS,
        run_url=lambda run_id: f"runs/{run_id}",
        local=lambda biller_id, moment: when_local(moment, zones.get(biller_id)),
        **READER,
        user_name=user_name(user),
    )


def _change_text(zone: ZoneInfo | None) -> Callable[[dict[str, Any]], str]:
    def text(row: dict[str, Any]) -> str:
        if row.get("change") == "still_open" and row.get("open_since") is not None:
            return f"still open since {date_local(row['open_since'], zone)}"
        return CHANGE_LABELS.get(row.get("change") or "", "")
    return text


@router.get("/balance-all/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run_id: int,
    outcome: str | None = None,
    change: str | None = None,
    sort: str = "account_number",
    desc: bool = False,
    page: int = Query(1, ge=1),
    per_page: int = Query(PER_PAGE_DEFAULT, ge=1, le=PER_PAGE_MAX),
    user: Any = USER,
) -> HTMLResponse:
    store, run, outcome = _run_items_query(run_id, outcome, sort, user, change)
    change = change or None
    total = store.count_items(run_id, outcome, change)
    pages = max(1, math.ceil(total / per_page))
    page = min(page, pages)
    rows = store.items(run_id, outcome=outcome, change=change, sort=sort, descending=desc,
                       offset=(page - 1) * per_page, limit=per_page)
    state = {"outcome": outcome or "", "change": change or "", "sort": sort, "desc": int(desc), "page": page,
             "per_page": per_page}

    def query(**changes: Any) -> str:
        params = {**state, **changes}
        return "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

    def sort_url(column: str) -> str:
        return query(sort=column, desc=int(not desc) if column == sort else 0, page=1)

    def download_url(kind: str) -> str:
        params = {"outcome": outcome or "", "change": change or "", "sort": sort, "desc": int(desc)}
        return f"{run_id}/items.{kind}?" + urlencode({k: v for k, v in params.items() if v != ""})

    history = store.history(run.biller_id, before_or_at=run.started_at)
    # one bar per weekly run (and this run, whatever its kind): dry and manual runs are not weeks
    history = [r for r in history if run_kind(r) == "weekly" or r.id == run.id]
    if run.id not in {r.id for r in history} and run.status not in ("running", "interrupted"):
        history.append(run)
    points = [
        RatePoint(label, r.mismatch_rate_pct, (100.0 * r.counts["cis_error"] / r.accounts_checked)
                  if r.accounts_checked else 0.0, current=r.id == run.id)
        for r, label in zip(history, run_labels(history), strict=True)
    ]
    biller = _biller(run.biller_id)
    zone = biller.tz if biller is not None else None
    found: Comparison | None = comparison(store.engine, run_id)
    previous = store.run(found.previous_run_id) if found and found.previous_run_id else None
    return render(
        "run.html",
        run=run,
        summary=_summary_for_page(run, zone),
        histogram=histogram_svg(store.differences(run_id)),
        rate_chart=mismatch_rate_svg(points),
        outcome=outcome,
        change=change,
        outcome_counts=[(name, run.counts[name]) for name in STORED_OUTCOMES],
        stored=sum(run.counts[name] for name in STORED_OUTCOMES),
        comparison=found,
        previous=previous,
        warning=coverage_warning(run, previous),
        resolved_rows=resolved(store.engine, run_id, limit=RESOLVED_SHOWN) if found else [],
        local_date=lambda moment: date_local(moment, zone),
        change_text=_change_text(zone),
        total=total,
        rows=rows,
        columns=item_columns(_rules(biller), run),
        headers=ITEM_HEADERS,
        labels=OUTCOME_LABELS,
        money=MONEY_COLUMNS,
        sort=sort,
        desc=desc,
        page=page,
        pages=pages,
        per_page=per_page,
        page_url=query,
        sort_url=sort_url,
        download_url=download_url,
        index_url="../",
        cell=cell,
        **READER,
        request=request,
    )


def _download_name(run: RunRow, kind: str, outcome: str | None, change: str | None = None) -> str:
    suffix = "".join(f"_{part}" for part in (outcome, change) if part)
    return f"balance_all_{run.biller_id}_{run.week}_run{run.id}{suffix}.{kind}"


@router.get("/balance-all/runs/{run_id}/items.csv")
def items_csv(
    run_id: int, outcome: str | None = None, change: str | None = None, sort: str = "account_number",
    desc: bool = False, user: Any = USER,
) -> StreamingResponse:
    store, run, outcome = _run_items_query(run_id, outcome, sort, user, change)
    rows = store.iter_items(run_id, outcome=outcome, change=change or None, sort=sort, descending=desc)
    name = _download_name(run, "csv", outcome, change)
    return StreamingResponse(
        csv_chunks(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/balance-all/runs/{run_id}/items.xlsx")
def items_xlsx(
    run_id: int, outcome: str | None = None, change: str | None = None, sort: str = "account_number",
    desc: bool = False, user: Any = USER,
) -> FileResponse:
    store, run, outcome = _run_items_query(run_id, outcome, sort, user, change)
    biller = _biller(run.biller_id)
    handle, path = tempfile.mkstemp(prefix="icb-balance-", suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(Path(path), run, store.iter_items(run_id, outcome=outcome, change=change or None, sort=sort,
                                                     descending=desc),
                   comparison=comparison(store.engine, run_id), resolved_rows=resolved(store.engine, run_id),
                   tz=biller.tz if biller is not None else None)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    cleanup: Callable[[], None] = lambda: Path(path).unlink(missing_ok=True)  # noqa: E731
    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=_download_name(run, "xlsx", outcome, change),
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(cleanup),
    )
