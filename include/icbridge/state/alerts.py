"""Alert incidents: one per (biller, flow, kind) from when it is noticed until it clears, so an
alert is sent once per incident and once more when it recovers (docs/operations.md). No Airflow.

The kinds, from a health row (icbridge.state.health): ``late`` (an expected file did not
come), ``behind`` (past its lag bound), ``failed`` (its last run failed, after its retries),
``in_doubt`` (items waiting for a person), ``rejected`` (an invoice file rejected in the last
7 days). ``open_and_close`` compares the rows with the open incidents: a new condition opens
one (a notice to send), a condition that cleared closes it (a ``recovered`` notice). A notice
whose sending failed stays unsent (``notified_at`` empty) and is sent by the next evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, Text, select, update

from icbridge.state.db import metadata, now
from icbridge.state.health import HealthRow
from icbridge.state.schema import ensure_schema

__all__ = ["Notice", "incident_kinds", "incidents", "open_and_close", "pending", "sent"]

incidents = Table(
    "icb_alert_incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("flow", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("detail", Text),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("notified_at", DateTime(timezone=True)),  # the incident's alert went out
    Column("closed_at", DateTime(timezone=True)),
    Column("recovery_notified_at", DateTime(timezone=True)),  # the "recovered" alert went out
)


@dataclass(frozen=True)
class Notice:
    """An alert to send: ``kind`` is the incident's, ``recovered`` says it cleared."""

    incident_id: int
    biller_id: str
    flow: str
    kind: str
    detail: str
    recovered: bool


def incident_kinds(row: HealthRow) -> dict[str, str]:
    """The incident kinds a health row shows now, each with its detail."""
    kinds: dict[str, str] = {}
    if row.status == "late":
        kinds["late"] = f"no file since the deadline of {row.due:%Y-%m-%d %H:%M} UTC" if row.due else "no file"
    elif row.status == "behind":
        kinds["behind"] = f"lag {row.lag} beyond its bound {row.lag_bound}"
    elif row.status == "failed":
        kinds["failed"] = (row.last_message or "its last run failed")[:500]
    if row.in_doubt:
        kinds["in_doubt"] = f"{row.in_doubt} item(s) waiting for a person"
    if row.rejected_7d:
        kinds["rejected"] = f"{row.rejected_7d} invoice file(s) rejected in the last 7 days"
    return kinds


def open_and_close(engine: Engine, rows: Iterable[HealthRow], at: datetime | None = None) -> None:
    """Open an incident for every condition the rows show that has none open; close the open
    incidents whose condition cleared. Idempotent: evaluating the same rows again changes nothing."""
    ensure_schema(engine)
    stamp = at or now()
    showing = {(r.biller_id, r.flow, kind): detail for r in rows for kind, detail in incident_kinds(r).items()}
    with engine.begin() as conn:
        open_rows = conn.execute(select(incidents).where(incidents.c.closed_at.is_(None))).all()
        open_keys = {(r.biller_id, r.flow, r.kind): r.id for r in open_rows}
        for key, detail in showing.items():
            if key not in open_keys:
                biller_id, flow, kind = key
                conn.execute(incidents.insert().values(biller_id=biller_id, flow=flow, kind=kind, detail=detail,
                                                       opened_at=stamp))
        for key, incident_id in open_keys.items():
            if key not in showing:
                conn.execute(update(incidents).where(incidents.c.id == incident_id).values(closed_at=stamp))


def pending(engine: Engine) -> list[Notice]:
    """The notices not sent yet: opened incidents without their alert, closed ones whose alert
    went out but whose recovery has not (an incident closed before its alert went out needs none)."""
    ensure_schema(engine)
    with engine.connect() as conn:
        found = conn.execute(select(incidents).where(
            (incidents.c.notified_at.is_(None) & incidents.c.closed_at.is_(None))
            | (incidents.c.closed_at.is_not(None) & incidents.c.notified_at.is_not(None)
               & incidents.c.recovery_notified_at.is_(None))
        ).order_by(incidents.c.id)).all()
    return [Notice(r.id, r.biller_id, r.flow, r.kind, r.detail or "", r.closed_at is not None) for r in found]


def sent(engine: Engine, notice: Notice, at: datetime | None = None) -> None:
    """Record that ``notice`` went out (once: a notice already recorded is left alone)."""
    column = incidents.c.recovery_notified_at if notice.recovered else incidents.c.notified_at
    with engine.begin() as conn:
        conn.execute(update(incidents).where(incidents.c.id == notice.incident_id, column.is_(None))
                     .values({column.key: at or now()}))
