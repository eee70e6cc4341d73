"""Integration health (``/health/``, ``/health/rows.json``), one biller's items waiting for a
person (``/health/{biller}/doubts``), and the onboarding preflight (``/billers/``): each row and
action behind the caller's rights in Airflow's auth manager (icbridge.web.auth)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from icbridge.config.biller import default_billers_dir, load_billers
from icbridge.flows.windows import describe_gap
from icbridge.state.health import NOT_OK, HealthRow, health_rows
from icbridge.web.auth import (
    check_action,
    csrf_token,
    readable_billers,
    readable_dag_ids,
    require_biller,
    require_connections,
)
from icbridge.web.common import USER, get_store, render, user_name

router = APIRouter()


@router.get("/health", include_in_schema=False)
def to_health(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + "/health/", status_code=307)

def _readable_rows(user: Any) -> tuple[list[HealthRow], dict[str, ZoneInfo], datetime]:
    """The health rows of the DAGs the user may read (the auth manager decides), each biller's zone."""
    now = datetime.now(UTC)
    billers = load_billers(default_billers_dir()).billers
    rows = health_rows(get_store().engine, billers, now)
    allowed = readable_dag_ids(user, {f"{r.biller_id}__{r.flow}" for r in rows})
    return [r for r in rows if f"{r.biller_id}__{r.flow}" in allowed], {b.biller_id: b.tz for b in billers}, now


@router.get("/health/rows.json")
def health_json(user: Any = USER) -> JSONResponse:
    """The same rows as JSON, for a monitor: one object per (biller, flow), times ISO 8601 UTC,
    lags and bounds in seconds, counts by status; unknown values are null (never 0)."""
    rows, _, now = _readable_rows(user)
    return JSONResponse({"as_of": now.isoformat(), "counts": dict(Counter(r.status for r in rows)),
                         "rows": [_row_json(r) for r in rows]}, headers={"Cache-Control": "no-store"})


@router.get("/health/", response_class=HTMLResponse)
def health(sort: str = "worst", desc: bool = False, user: Any = USER) -> HTMLResponse:
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
    return render("health.html", rows=rows, columns=HEALTH_COLUMNS, sort=sort, desc=desc, sort_url=sort_url,
                 now=now.strftime("%Y-%m-%d %H:%M"), lag=_lag_text, when=_when, local=local,
                 counts=[(s, counts[s]) for s in ("late", "behind", "failed", "attention", "never run", "ok")
                         if counts[s]], need=sum(counts[s] for s in NOT_OK), user_name=user_name(user))


@router.get("/health/{biller_id}/doubts", response_class=HTMLResponse)
def health_doubts(biller_id: str, user: Any = USER) -> HTMLResponse:
    """What of one biller waits for a person, and who settled what (icbridge.web.doubts)."""
    from icbridge.web.doubts import doubts

    require_biller(user, biller_id)
    return render("doubts.html", biller_id=biller_id, user_name=user_name(user),
                 **doubts(get_store().engine, biller_id))


@router.get("/billers", include_in_schema=False)
def to_billers(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + "/billers/", status_code=307)


@router.get("/billers/", response_class=HTMLResponse)
def billers(user: Any = USER) -> HTMLResponse:
    """Every biller file, valid or not, with a link to its onboarding preflight."""
    loaded = load_billers(default_billers_dir())
    rows = [(b.biller_id, f"{b.cis}, BID {b.bid}", True) for b in loaded.billers]
    rows += [(path.stem, message.splitlines()[0], False) for path, message in loaded.errors.items()]
    allowed = readable_billers(user, [r[0] for r in rows])
    return render("billers.html", rows=sorted(r for r in rows if r[0] in allowed), user_name=user_name(user))

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


@router.get("/billers/{biller_id}/check", response_class=HTMLResponse)
def biller_check_page(biller_id: str, user: Any = USER) -> HTMLResponse:
    """The form that runs the onboarding preflight (a GET runs nothing)."""
    _check_target(biller_id, user)
    return render("check.html", biller_id=biller_id, checks=None, ok=False,
                 token=csrf_token(user, f"check:{biller_id}"), user_name=user_name(user))


@router.post("/billers/{biller_id}/check", response_class=HTMLResponse)
async def biller_check(request: Request, biller_id: str, user: Any = USER) -> HTMLResponse:
    """The onboarding preflight (icbridge.preflight, as ``python -m icbridge biller check``):
    logs in with stored connections, so a same-origin POST with the page's token only."""
    from starlette.concurrency import run_in_threadpool

    from icbridge.preflight import check_biller

    path = _check_target(biller_id, user)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    check_action(request, user, f"check:{biller_id}", next(iter(form.get("token") or []), None))
    checks = await run_in_threadpool(check_biller, path)
    return render("check.html", biller_id=biller_id, checks=checks, ok=all(c.ok for c in checks),
                 token=csrf_token(user, f"check:{biller_id}"), user_name=user_name(user))


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
