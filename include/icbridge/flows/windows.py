"""Watermarked reading for the periodic sync flows (balances, payments, customer changes).

A run does not trust the scheduler to have run every interval. Per (biller, flow) the state
DB keeps a watermark (icbridge.state.watermarks): the point up to which every item was
handled. A run reads

* ``[min(watermark, own start) - lookback, own end)`` when there is a watermark: the gap
  left by downtime (the scheduler creates no runs for missed intervals with catchup off),
  plus a lookback overlap for late arrivals (IVR and bank-direct payments come in batches
  with a PaymentDate in the past). A backfill or cleared run of an old interval reads its
  own interval plus the lookback;
* ``[own start, own end)`` when there is none yet (the first run).

The span is read in sub-windows of at most ``sync.max_read_window_minutes``, oldest first:
after a long outage no single IC call covers days. The flows deduplicate by natural key, so
the overlap never repeats a CIS or IC call. After the run the watermark moves to the point
up to which everything succeeded (``SyncReport.done_through``; the span's end when all did)
and never backwards. When a live run (its own interval ended less than
``sync.max_lag_minutes`` ago; a backfill of old intervals is not judged) leaves the flow
further behind than that bound, it fails naming the gap, after doing what it could.

:func:`last_complete_period` - a manual run's interval when Airflow's timetable gives an
empty one (CronDataIntervalTimetable 3.3.2, a cron that skips hours on a DST day).
No Airflow imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar

from croniter import croniter

from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport
from icbridge.soap.invoice_cloud import Listing
from icbridge.state.watermarks import SyncItems, Watermarks

log = logging.getLogger(__name__)

__all__ = [
    "ReadPlan",
    "WindowedListing",
    "describe_gap",
    "last_complete_period",
    "plan_read",
    "read_windows",
    "run_watermarked",
    "split",
]

T = TypeVar("T")


class WindowedListing(Listing):
    """IC list answers of several windows, each item once (by key), oldest window first.
    ``invalid``: the items any window left out (answer contract); ``held_from``: the start of
    the first window that left one out (a watermark must not pass it), None if none did."""

    def __init__(self, values: Iterable[Any] = (), invalid: list[str] | None = None,
                 held_from: datetime | None = None) -> None:
        super().__init__(list(values), invalid)
        self.held_from = held_from


def read_windows(read: Callable[[datetime, datetime], Sequence[T]], windows: Sequence[Interval],
                 key: Callable[[T], str]) -> WindowedListing:
    """``read(start, end)`` for each window, oldest first, merged (each key once)."""
    seen: dict[str, T] = {}
    invalid: list[str] = []
    held_from: datetime | None = None
    for window in windows:
        answer = read(window.start, window.end)
        for item in answer:
            seen.setdefault(key(item), item)
        problems = list(getattr(answer, "invalid", None) or [])
        if problems and held_from is None:
            held_from = window.start
        invalid += problems
    return WindowedListing(seen.values(), invalid, held_from)


@dataclass(frozen=True)
class ReadPlan:
    """What a run reads: ``span`` in ``windows`` (oldest first), and why."""

    own: Interval  # the run's data interval
    span: Interval
    windows: tuple[Interval, ...]
    watermark: datetime | None  # before the run
    gap: timedelta  # own.start - watermark when the run catches up, else 0

    def describe(self) -> str:
        text = f"reads {self.span} in {len(self.windows)} window(s)"
        if self.watermark is None:
            return text + " (no watermark yet: the run's own interval)"
        text += f"; watermark {self.watermark.isoformat()}"
        if self.gap > timedelta(0):
            text += f"; catching up a gap of {describe_gap(self.gap)} before {self.own.start.isoformat()}"
        return text


def describe_gap(gap: timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * (bool(minutes) or
                                                                                                not (days or hours))
    return " ".join(parts)


def split(span: Interval, max_window: timedelta) -> tuple[Interval, ...]:
    """``span`` cut into windows of at most ``max_window``, oldest first (the last may be shorter)."""
    if max_window <= timedelta(0):
        raise ValueError("max_window must be positive")
    out, start = [], span.start
    while start < span.end:
        end = min(start + max_window, span.end)
        out.append(Interval(start, end))
        start = end
    return tuple(out)


def plan_read(own: Interval, watermark: datetime | None, *, lookback: timedelta, max_window: timedelta) -> ReadPlan:
    """The span a run reads (see the module docstring)."""
    if watermark is None:
        return ReadPlan(own, own, split(own, max_window), None, timedelta(0))
    start = min(own.start, watermark) - lookback
    gap = max(own.start - watermark, timedelta(0))
    span = Interval(start, own.end)
    return ReadPlan(own, span, split(span, max_window), watermark, gap)


def run_watermarked(
    *,
    biller: BillerConfig,
    flow: str,
    own: Interval,
    store: Watermarks,
    run_id: str | None,
    work: Callable[[ReadPlan], SyncReport],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    items: SyncItems | None = None,
) -> SyncReport:
    """Plan the read from the stored watermark, run ``work`` on it, advance the watermark to
    ``report.done_through`` (never back), record the run, and fail when still lagging.

    ``work`` raises :class:`SyncFailed` after handling what it could (its report says how
    far it got); any other exception propagates with the watermark untouched (nothing was
    done, or nothing the flow can vouch for). With ``items``, handled items more than
    ``sync.items_retention_days`` behind the new watermark are forgotten."""
    sync = biller.sync_settings()
    before = store.covered_through(biller.biller_id, flow)
    plan = plan_read(own, before, lookback=timedelta(minutes=sync.lookback_minutes),
                     max_window=timedelta(minutes=sync.max_read_window_minutes))
    log.info("%s %s: %s", biller.biller_id, flow, plan.describe())
    failure: SyncFailed | None = None
    try:
        report = work(plan)
    except SyncFailed as exc:
        failure, report = exc, exc.report
    except Exception as exc:
        store.record_run(biller.biller_id, flow, run_id=run_id, ok=False, message=f"{type(exc).__name__}: {exc}")
        raise
    if plan.gap > timedelta(0):
        report.add("caught_up_gap", detail=f"{describe_gap(plan.gap)} before {own.start.isoformat()}", note=True)
    done = report.done_through if report.done_through is not None else plan.span.end
    done = min(max(done, plan.span.start), plan.span.end)
    after = store.advance(biller.biller_id, flow, done, run_id) if before is None or done > before else before
    report.covered_through = after
    if items is not None and after != before:  # keep icb_sync_items bounded
        items.prune(biller.biller_id, flow, after - timedelta(days=sync.items_retention_days))
    moment = clock()
    lag = moment - after
    bound = timedelta(minutes=sync.max_lag_minutes)
    message = failure.args[0] if failure else None
    retry = failure.retry if failure else False
    if lag > bound and moment - own.end <= bound:  # a live run (not a backfill of old intervals) still behind
        behind = (
            f"{flow} of {biller.biller_id} is {describe_gap(lag)} behind (bound {sync.max_lag_minutes} min): "
            f"everything up to {after.isoformat()} is done, [{after.isoformat()}, now) is not"
        )
        if done < plan.span.end:
            behind += f"; this run stopped at {done.isoformat()} ({_first_open(report)})"
        message = f"{message}; {behind}" if message else behind
        log.error("%s", behind)
    store.record_run(biller.biller_id, flow, run_id=run_id, ok=message is None, message=message)
    if message is not None:
        raise SyncFailed(report, message, retry=retry)
    return report


def _first_open(report: SyncReport) -> str:
    """The first noted item that held the watermark back, for the lag message (masked)."""
    for item in report.items:
        if item["outcome"] not in ("caught_up_gap",):
            return f"{item['outcome']}: account {item['account']} {item['detail']}".strip()
    return "see the run's log"


def _aware(naive: datetime, tz: tzinfo) -> datetime:
    """A local wall time (croniter works on those) as UTC; a time skipped by DST is taken with
    the offset before the change (02:30 on a spring-forward day is 03:30 after it)."""
    return naive.replace(tzinfo=tz).astimezone(UTC)


def last_complete_period(cron: str, tz: tzinfo, at: datetime) -> Interval:
    """The last whole period of ``cron`` (in ``tz``) that ended at or before ``at``: from the
    previous fire to the one before it, as distinct instants. On a DST day a fire that falls
    in a skipped hour lands on the same instant as the next one; such duplicates are passed
    over, so the period is never empty."""
    at_utc = at.astimezone(UTC)
    local = at_utc.astimezone(tz).replace(tzinfo=None)
    fires = croniter(cron, local + timedelta(seconds=1))
    end: datetime | None = None
    for _ in range(10_000):
        fire = _aware(fires.get_prev(datetime), tz)
        if end is None:
            if fire <= at_utc:
                end = fire
        elif fire < end:
            return Interval(fire, end)
    raise ValueError(f"cron {cron!r} has no two distinct fires before {at.isoformat()}")
