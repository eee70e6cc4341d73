"""Settlements: every decision a person made about an item in doubt — who, when, from what to
what, and why (issue 21).

One row per ``settle`` (an upload part, a payment, a delivery), written in the same transaction
as the change it records, so a change is never without its record. ``python -m icbridge ledger
|payments|deliveries show`` list them. Rows are never updated or deleted. No Airflow imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, Engine, Integer, String, Table, Text, select

from icbridge.state.db import metadata, now

__all__ = ["Settlement", "history", "record", "settlements"]

settlements = Table(
    "icb_settlements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # upload | payment | delivery
    Column("biller_id", String(64), nullable=False),
    Column("item", String(512), nullable=False),  # file/part, PaymentGUID, flow/day
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("settled_by", String(255), nullable=False),  # the OS user (CLI) or the Airflow user (a page)
    Column("reason", Text, nullable=False),
    Column("forced", Integer, nullable=False, default=0),  # 1: settled although its run held a live lease
    Column("settled_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Settlement:
    kind: str
    biller_id: str
    item: str
    from_status: str
    to_status: str
    settled_by: str
    reason: str
    forced: bool
    settled_at: datetime

    def describe(self) -> str:
        """``2026-12-07 14:02 UTC anna: F_01.BIF sending -> uploaded (IC portal shows it)``."""
        forced = " [forced]" if self.forced else ""
        return (f"{self.settled_at:%Y-%m-%d %H:%M} UTC {self.settled_by}: {self.item} {self.from_status} -> "
                f"{self.to_status}{forced} ({self.reason})")


def record(conn: Connection, *, kind: str, biller_id: str, item: str, from_status: str, to_status: str,
           by: str | None, reason: str | None, forced: bool = False) -> None:
    """Keep one settlement, in the caller's transaction. ValueError without a reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a settlement needs a reason (--reason: what you checked, e.g. 'IC portal shows the file')")
    conn.execute(settlements.insert().values(kind=kind, biller_id=biller_id, item=item, from_status=from_status,
                                             to_status=to_status, settled_by=by or "unknown",
                                             reason=reason, forced=int(forced), settled_at=now()))


def history(engine: Engine, *, kind: str | None = None, biller_id: str | None = None, item: str | None = None,
            limit: int = 50) -> list[Settlement]:
    """Settlements newest first."""
    query = select(settlements).order_by(settlements.c.id.desc()).limit(limit)
    if kind:
        query = query.where(settlements.c.kind == kind)
    if biller_id:
        query = query.where(settlements.c.biller_id == biller_id)
    if item:
        query = query.where(settlements.c.item == item)
    with engine.connect() as conn:
        return [Settlement(r.kind, r.biller_id, r.item, r.from_status, r.to_status, r.settled_by, r.reason,
                           bool(r.forced), r.settled_at) for r in conn.execute(query)]
