"""The analysts' Balance All pages: a FastAPI app the Airflow plugin mounts at ``/icbridge``.

Pages (all behind the caller's Airflow login, see :mod:`icbridge.web.auth`):

* ``/icbridge/balance-all/`` — runs per biller with their summary;
* ``/icbridge/balance-all/runs/{id}`` — one run: summary, the two charts (inline SVG), the
  item table (server-side sort, outcome filter and paging, for 100,000 rows);
* ``/icbridge/balance-all/runs/{id}/items.csv`` and ``.xlsx`` — the items (current filter
  and order), streamed;
* ``/icbridge/health/`` — Integration health: per biller and flow, last success, covered
  through, lag, items in doubt, files rejected in 7 days; sortable, worst first
  (icbridge.state.health).

Links are relative, so the pages work under any ``[api] base_url`` and inside the Airflow
UI's iframe (external view). Reads the state DB only.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from icbridge.config.biller import default_billers_dir, load_billers
from icbridge.flows.windows import describe_gap
from icbridge.reconcile.charts import RatePoint, histogram_svg, mismatch_rate_svg
from icbridge.reconcile.compare import OUTCOME_LABELS, OUTCOMES
from icbridge.reconcile.export import MONEY_COLUMNS, csv_chunks, summary_rows, write_xlsx
from icbridge.state.health import NOT_OK, HealthRow, health_rows
from icbridge.state.locate import locate_state_db
from icbridge.state.reconcile import SORTABLE, ReconcileStore, RunRow
from icbridge.web.auth import (
    NotAuthenticated,
    check_action,
    csrf_token,
    current_user,
    not_authenticated_handler,
    readable_billers,
    readable_dag_ids,
    require_biller,
    require_connections,
)
from icbridge.web.reader import checked_none, money, run_kind, week_ending, when_local
from icbridge.web.templates import ENV

URL_PREFIX = "/icbridge"
PER_PAGE_DEFAULT, PER_PAGE_MAX = 100, 1000
OUTCOME_NAMES = [str(o) for o in OUTCOMES]
ITEM_HEADERS = {
    "account_number": "Account", "invoice_number": "Invoice", "outcome": "Outcome",
    "ic_balance_due": "IC balance", "cis_balance": "CIS balance", "difference": "Difference",
    "ic_total_amount_due": "IC total due", "cis_future_balance": "CIS future balance",
    "total_difference": "Total difference", "ic_block_cc": "IC blocks cards", "ic_block_eft": "IC blocks ACH",
    "cis_cash_only": "CIS cash only", "corrected": "Corrected", "message": "Message",
}
"""Column headers people read on the run page (the code names stay in URLs, CSV and XLSX)."""
STORED_OUTCOMES = [o for o in OUTCOME_NAMES if o != "match"]
# Pages are framed by the Airflow UI (same origin) and load nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def state_url() -> str:
    """icbridge.state.locate's rule, the api-server's way (Airflow's secrets backends)."""
    return locate_state_db().url


def run_labels(runs: list) -> list[str]:
    """Chart labels that tell runs apart: the ISO week, and for a week with several runs
    (a manual or dry run beside the scheduled one) each run's start, e.g. ``2026-W48 Sun 02:00``."""
    weeks = Counter(r.week for r in runs)
    return [r.week if weeks[r.week] == 1 or r.started_at is None else f"{r.week} {r.started_at:%a %H:%M}"
            for r in runs]


@functools.lru_cache(maxsize=4)
def _store(url: str) -> ReconcileStore:
    return ReconcileStore(url)


def get_store() -> ReconcileStore:
    return _store(state_url())


READER = {"week_ending": week_ending, "run_kind": run_kind, "checked_none": checked_none, "as_money": money}
"""The reader's-form helpers every Balance All page gets (icbridge.web.reader)."""


def _biller_zones() -> dict[str, ZoneInfo]:
    return {b.biller_id: b.tz for b in load_billers(default_billers_dir()).billers}


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


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _html(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(template).render(**context), headers=SECURITY_HEADERS)


def _user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:
        return "?"


def _run_or_404(store: ReconcileStore, run_id: int) -> RunRow:
    run = store.run(run_id)
    if run is None:
        raise HTTPException(404, f"no Balance All run {run_id}")
    return run


def _check_query(outcome: str | None, sort: str) -> str | None:
    if outcome and outcome not in OUTCOME_NAMES:
        raise HTTPException(400, f"outcome must be one of {', '.join(OUTCOME_NAMES)}")
    if sort not in SORTABLE:
        raise HTTPException(400, f"sort must be one of {', '.join(SORTABLE)}")
    return outcome or None


def _run_items_query(run_id: int, outcome: str | None, sort: str, user: Any
                     ) -> tuple[ReconcileStore, RunRow, str | None]:
    """What every run page and download starts with: the store, the run (404), the user's right
    to read its biller's Balance All DAG (403), the checked filter (400)."""
    store = get_store()
    run = _run_or_404(store, run_id)
    require_biller(user, run.biller_id, ("balance_all",))
    return store, run, _check_query(outcome, sort)


async def _error_page(request: Request, exc: Exception) -> Any:
    """A wrong URL or a bad query answers a page inside the Airflow UI frame, not raw JSON
    (a client that asks for JSON still gets FastAPI's ``{"detail": …}``)."""
    if not isinstance(exc, StarletteHTTPException):  # registered for that class only
        raise exc
    accept = request.headers.get("accept", "")
    if "text/html" not in accept and "*/*" not in accept and accept:
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)
    titles = {400: "Bad request", 401: "Not logged in", 403: "Not allowed", 404: "Not found"}
    depth = request.url.path.rstrip("/").count("/") - (request.scope.get("root_path", "").count("/"))
    response = ENV.get_template("error.html").render(
        status=exc.status_code, title=titles.get(exc.status_code, "Error"), detail=str(exc.detail),
        index_url="../" * max(depth - 1, 0) + "balance-all/",
    )
    return HTMLResponse(response, status_code=exc.status_code, headers={**SECURITY_HEADERS, **(exc.headers or {})})


def create_app() -> FastAPI:
    app = FastAPI(title="icbridge reports", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(NotAuthenticated, not_authenticated_handler)
    app.add_exception_handler(StarletteHTTPException, _error_page)
    user_dep = Depends(current_user)

    @app.get("/", include_in_schema=False)
    @app.get("/balance-all", include_in_schema=False)
    def to_index(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/balance-all/", status_code=307)

    @app.get("/balance-all/", response_class=HTMLResponse)
    def index(biller: str | None = None, user: Any = user_dep) -> HTMLResponse:
        store = get_store()
        if biller:
            require_biller(user, biller, ("balance_all",))
        billers = [biller] if biller else store.billers()
        allowed = readable_billers(user, billers, ("balance_all",))
        groups = [(b, store.runs(b, limit=60)) for b in billers if b in allowed]
        zones = _biller_zones()
        return _html(
            "index.html",
            groups=[(b, runs) for b, runs in groups if runs],
            outcomes=OUTCOME_NAMES,
            labels=OUTCOME_LABELS,
            run_url=lambda run_id: f"runs/{run_id}",
            local=lambda biller_id, moment: when_local(moment, zones.get(biller_id)),
            **READER,
            user_name=_user_name(user),
        )

    @app.get("/balance-all/runs/{run_id}", response_class=HTMLResponse)
    def run_page(
        request: Request,
        run_id: int,
        outcome: str | None = None,
        sort: str = "account_number",
        desc: bool = False,
        page: int = Query(1, ge=1),
        per_page: int = Query(PER_PAGE_DEFAULT, ge=1, le=PER_PAGE_MAX),
        user: Any = user_dep,
    ) -> HTMLResponse:
        store, run, outcome = _run_items_query(run_id, outcome, sort, user)
        total = store.count_items(run_id, outcome)
        pages = max(1, math.ceil(total / per_page))
        page = min(page, pages)
        rows = store.items(run_id, outcome=outcome, sort=sort, descending=desc, offset=(page - 1) * per_page,
                           limit=per_page)
        state = {"outcome": outcome or "", "sort": sort, "desc": int(desc), "page": page, "per_page": per_page}

        def query(**changes: Any) -> str:
            params = {**state, **changes}
            return "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

        def sort_url(column: str) -> str:
            return query(sort=column, desc=int(not desc) if column == sort else 0, page=1)

        def download_url(kind: str) -> str:
            params = {"outcome": outcome or "", "sort": sort, "desc": int(desc)}
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
        zone = _biller_zones().get(run.biller_id)
        return _html(
            "run.html",
            run=run,
            summary=_summary_for_page(run, zone),
            histogram=histogram_svg(store.differences(run_id)),
            rate_chart=mismatch_rate_svg(points),
            outcome=outcome,
            outcome_counts=[(name, run.counts[name]) for name in STORED_OUTCOMES],
            stored=sum(run.counts[name] for name in STORED_OUTCOMES),
            total=total,
            rows=rows,
            columns=list(SORTABLE),
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
            cell=_cell,
            **READER,
            request=request,
        )

    def _download_name(run: RunRow, kind: str, outcome: str | None) -> str:
        suffix = f"_{outcome}" if outcome else ""
        return f"balance_all_{run.biller_id}_{run.week}_run{run.id}{suffix}.{kind}"

    @app.get("/balance-all/runs/{run_id}/items.csv")
    def items_csv(
        run_id: int, outcome: str | None = None, sort: str = "account_number", desc: bool = False,
        user: Any = user_dep,
    ) -> StreamingResponse:
        store, run, outcome = _run_items_query(run_id, outcome, sort, user)
        rows = store.iter_items(run_id, outcome=outcome, sort=sort, descending=desc)
        name = _download_name(run, "csv", outcome)
        return StreamingResponse(
            csv_chunks(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    @app.get("/balance-all/runs/{run_id}/items.xlsx")
    def items_xlsx(
        run_id: int, outcome: str | None = None, sort: str = "account_number", desc: bool = False,
        user: Any = user_dep,
    ) -> FileResponse:
        store, run, outcome = _run_items_query(run_id, outcome, sort, user)
        handle, path = tempfile.mkstemp(prefix="icb-balance-", suffix=".xlsx")
        os.close(handle)
        try:
            write_xlsx(Path(path), run, store.iter_items(run_id, outcome=outcome, sort=sort, descending=desc))
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
        cleanup: Callable[[], None] = lambda: Path(path).unlink(missing_ok=True)  # noqa: E731
        return FileResponse(
            path,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            filename=_download_name(run, "xlsx", outcome),
            headers={"Cache-Control": "no-store"},
            background=BackgroundTask(cleanup),
        )

    @app.get("/health", include_in_schema=False)
    def to_health(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/health/", status_code=307)

    def _readable_rows(user: Any) -> tuple[list[HealthRow], dict[str, ZoneInfo], datetime]:
        """The health rows of the DAGs the user may read (the auth manager decides), each biller's zone."""
        now = datetime.now(UTC)
        billers = load_billers(default_billers_dir()).billers
        rows = health_rows(get_store().engine, billers, now)
        allowed = readable_dag_ids(user, {f"{r.biller_id}__{r.flow}" for r in rows})
        return [r for r in rows if f"{r.biller_id}__{r.flow}" in allowed], {b.biller_id: b.tz for b in billers}, now

    @app.get("/health/rows.json")
    def health_json(user: Any = user_dep) -> JSONResponse:
        """The same rows as JSON, for a monitor: one object per (biller, flow), times ISO 8601 UTC,
        lags and bounds in seconds, counts by status; unknown values are null (never 0)."""
        rows, _, now = _readable_rows(user)
        return JSONResponse({"as_of": now.isoformat(), "counts": dict(Counter(r.status for r in rows)),
                             "rows": [_row_json(r) for r in rows]}, headers={"Cache-Control": "no-store"})

    @app.get("/health/", response_class=HTMLResponse)
    def health(sort: str = "worst", desc: bool = False, user: Any = user_dep) -> HTMLResponse:
        if sort not in HEALTH_SORTS:
            raise HTTPException(400, f"sort must be one of {', '.join(HEALTH_SORTS)}")
        rows, zones, now = _readable_rows(user)
        if sort != "worst":
            present = [r for r in rows if HEALTH_SORTS[sort](r) is not None]
            absent = [r for r in rows if HEALTH_SORTS[sort](r) is None]  # unknown values last, either way
            rows = sorted(present, key=HEALTH_SORTS[sort], reverse=desc) + absent
        elif desc:
            rows.reverse()

        def sort_url(column: str) -> str:
            return "?" + urlencode({"sort": column, "desc": int(not desc) if column == sort else 0})

        def local(row: HealthRow, moment: datetime | None) -> str:
            """A time in the row's biller's zone, the zone named (UTC for a biller file that is gone)."""
            if moment is None:
                return "—"
            return moment.astimezone(zones.get(row.biller_id, UTC)).strftime("%Y-%m-%d %H:%M %Z")

        counts = Counter(r.status for r in rows)
        return _html("health.html", rows=rows, columns=HEALTH_COLUMNS, sort=sort, desc=desc, sort_url=sort_url,
                     now=now.strftime("%Y-%m-%d %H:%M"), lag=_lag_text, when=_when, local=local,
                     counts=[(s, counts[s]) for s in ("late", "behind", "failed", "attention", "never run", "ok")
                             if counts[s]], need=sum(counts[s] for s in NOT_OK), user_name=_user_name(user))

    @app.get("/health/{biller_id}/doubts", response_class=HTMLResponse)
    def health_doubts(biller_id: str, user: Any = user_dep) -> HTMLResponse:
        """What of one biller waits for a person, and who settled what (icbridge.web.doubts)."""
        from icbridge.web.doubts import doubts

        require_biller(user, biller_id)
        return _html("doubts.html", biller_id=biller_id, user_name=_user_name(user),
                     **doubts(get_store().engine, biller_id))

    @app.get("/billers", include_in_schema=False)
    def to_billers(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/billers/", status_code=307)

    @app.get("/billers/", response_class=HTMLResponse)
    def billers(user: Any = user_dep) -> HTMLResponse:
        """Every biller file, valid or not, with a link to its onboarding preflight."""
        loaded = load_billers(default_billers_dir())
        rows = [(b.biller_id, f"{b.cis}, BID {b.bid}", True) for b in loaded.billers]
        rows += [(path.stem, message.splitlines()[0], False) for path, message in loaded.errors.items()]
        allowed = readable_billers(user, [r[0] for r in rows])
        return _html("billers.html", rows=sorted(r for r in rows if r[0] in allowed), user_name=_user_name(user))

    def _check_target(biller_id: str, user: Any) -> Path:
        """The biller file to check, once the user may read the biller and use connections."""
        if not biller_id.replace("_", "").isalnum():
            raise HTTPException(404, f"no biller {biller_id!r}")
        require_biller(user, biller_id)
        require_connections(user)
        path = default_billers_dir() / f"{biller_id}.yaml"
        if not path.exists():
            raise HTTPException(404, f"no biller file {biller_id}.yaml")
        return path

    @app.get("/billers/{biller_id}/check", response_class=HTMLResponse)
    def biller_check_page(biller_id: str, user: Any = user_dep) -> HTMLResponse:
        """The form that runs the onboarding preflight (a GET runs nothing)."""
        _check_target(biller_id, user)
        return _html("check.html", biller_id=biller_id, checks=None, ok=False,
                     token=csrf_token(user, f"check:{biller_id}"), user_name=_user_name(user))

    @app.post("/billers/{biller_id}/check", response_class=HTMLResponse)
    async def biller_check(request: Request, biller_id: str, user: Any = user_dep) -> HTMLResponse:
        """The onboarding preflight (icbridge.preflight, as ``python -m icbridge biller check``):
        logs in with stored connections, so a same-origin POST with the page's token only."""
        from starlette.concurrency import run_in_threadpool

        from icbridge.preflight import check_biller

        path = _check_target(biller_id, user)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        check_action(request, user, f"check:{biller_id}", next(iter(form.get("token") or []), None))
        checks = await run_in_threadpool(check_biller, path)
        return _html("check.html", biller_id=biller_id, checks=checks, ok=all(c.ok for c in checks),
                     token=csrf_token(user, f"check:{biller_id}"), user_name=_user_name(user))

    return app


HEALTH_COLUMNS = [("biller", "Biller"), ("flow", "Flow"), ("worst", "Status"), ("lag", "Lag"),
                  ("covered_through", "Covered through"), ("last_success", "Last success"),
                  ("in_doubt", "In doubt"), ("rejected_7d", "Files rejected (7 d)")]
HEALTH_SORTS: dict[str, Callable[[HealthRow], Any]] = {
    "worst": HealthRow.sort_key,
    "biller": lambda r: (r.biller_id, r.flow),
    "flow": lambda r: (r.flow, r.biller_id),
    "lag": lambda r: r.lag,
    "covered_through": lambda r: r.covered_through,
    "last_success": lambda r: r.last_success,
    "in_doubt": lambda r: r.in_doubt,
    "rejected_7d": lambda r: r.rejected_7d,
}


def _row_json(row: HealthRow) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(UTC).isoformat()

    def seconds(span: timedelta | None) -> float | None:
        return None if span is None else span.total_seconds()

    return {"biller_id": row.biller_id, "flow": row.flow, "status": row.status,
            "dag_id": f"{row.biller_id}__{row.flow}",
            "last_success": iso(row.last_success), "covered_through": iso(row.covered_through),
            "lag_seconds": seconds(row.lag), "lag_bound_seconds": seconds(row.lag_bound), "in_doubt": row.in_doubt,
            "rejected_7d": row.rejected_7d, "due": iso(row.due), "last_received": iso(row.last_received),
            "last_message": row.last_message}


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _lag_text(row: HealthRow) -> str:
    if row.lag is None:
        return "—"
    text = describe_gap(row.lag) if row.lag >= timedelta(0) else "0 min"
    return f"{text} (bound {describe_gap(row.lag_bound)})" if row.lag_bound is not None else text
