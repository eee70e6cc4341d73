"""What the three web-service sync flows (balances, payments, customer changes) share.

* :class:`Interval` - the run's data interval; every flow works on it only, so a backfill of
  an interval does exactly that interval again (IC lists are ``from <= t < to``).
* :func:`read_retryable` / :func:`is_not_sent` - which errors may be tried again: reads and
  idempotent setters on any transport fault; a payment only when the request provably never
  left (the connection was never made).
* :class:`SyncReport` - counts per outcome plus the items worth a look (accounts masked), for
  the task log and the task's return value.
No Airflow imports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from icbridge.calls import CallPolicy, is_transport_error
from icbridge.config.biller import BillerConfig
from icbridge.errors import FlowError
from icbridge.masking import mask_account
from icbridge.soap.errors import is_not_sent

__all__ = ["Interval", "SyncFailed", "SyncReport", "is_not_sent", "policy_for", "read_retryable", "describe_error"]


@dataclass(frozen=True)
class Interval:
    """``[start, end)``, both time-zone aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be time-zone aware")
        if not self.start < self.end:
            raise ValueError(f"empty interval {self.start.isoformat()} .. {self.end.isoformat()}")

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def read_retryable(exc: BaseException) -> bool:
    """A read or an idempotent setter may be tried again after any transport fault (not sent,
    no answer, HTTP 5xx/408/429, SOAP faults), whichever client raised it."""
    return is_transport_error(exc)


def describe_error(exc: BaseException) -> str:
    """One line for a log or the ledger; never includes credentials (the clients keep them out)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500]


def policy_for(biller: BillerConfig, *, attempts: int | None = None) -> CallPolicy:
    """The biller's CIS bounds (cis_service) and retry schedule (sync section)."""
    cis, sync = biller.cis_service, biller.sync_settings()
    if cis is None:
        raise ValueError(f"biller {biller.biller_id} has no cis_service section")
    return CallPolicy(
        in_flight=cis.calls_in_flight,
        per_second=cis.calls_per_second,
        attempts=attempts if attempts is not None else sync.attempts,
        backoff_seconds=sync.backoff_seconds,
    )


@dataclass
class SyncReport:
    """What a run did: counts per outcome, and the items that need a look (masked accounts)."""

    flow: str
    biller_id: str
    interval: Interval
    counts: Counter[str] = field(default_factory=Counter)
    items: list[dict[str, str]] = field(default_factory=list)  # outcome, account (masked), detail
    failure: str | None = None  # why the run must fail, set by the flow
    done_through: datetime | None = None  # everything before this succeeded (None: the whole interval)
    covered_through: datetime | None = None  # the watermark after the run (flows/windows.py)

    def add(self, outcome: str, account: str = "", detail: str = "", *, note: bool = False, **extra: str) -> None:
        self.counts[outcome] += 1
        if note:
            self.items.append({"outcome": outcome, "account": mask_account(account), "detail": detail, **extra})

    def describe(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing to do"
        return f"{self.flow} {self.biller_id} {self.interval}: {counts}"

    def lines(self, limit: int = 200) -> list[str]:
        """One log line per noted item (accounts masked), at most ``limit``."""
        out = []
        for item in self.items[:limit]:
            extra = " ".join(f"{k}={v}" for k, v in item.items() if k not in ("outcome", "account", "detail"))
            out.append(f"  {item['outcome']}: account {item['account']} {extra} {item['detail']}".rstrip())
        if len(self.items) > limit:
            out.append(f"  ... and {len(self.items) - limit} more")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The task's return value (XCom): counts and masked items only."""
        return {
            "flow": self.flow,
            "biller_id": self.biller_id,
            "interval_start": self.interval.start.isoformat(),
            "interval_end": self.interval.end.isoformat(),
            "counts": dict(sorted(self.counts.items())),
            "items": self.items[:200],
            "failure": self.failure,
            "covered_through": self.covered_through.isoformat() if self.covered_through else None,
        }


class SyncFailed(FlowError):
    """The run did all it could and must still fail. ``retry``: an automatic retry may help
    (CIS unreachable, a setter that never got through); otherwise a person must act first."""

    def __init__(self, report: SyncReport, message: str, *, retry: bool) -> None:
        super().__init__(message)
        report.failure = message
        self.report = report
        self.retry = retry
