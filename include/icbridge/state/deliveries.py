"""Deliveries of generated files to billers (Logis payment export): what was sent, where, when.

One row per attempt, on the shared state-DB ``metadata``. An attempt is recorded
``sending`` *before* the file goes out and ``delivered`` / ``failed`` after, so a crash in
between leaves a trace: a later run finds the ``sending`` row and either confirms the file
at the destination (FTP family: name, size and sha256 on the server) or, when it cannot
know (email), stops and asks a person (see docs/payment-export.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Column, DateTime, Engine, Index, Integer, String, Table, Text, select, update

from icbridge.state.db import default_state_url, make_engine, metadata, now
from icbridge.state.schema import ensure_schema

__all__ = ["Delivery", "DeliveryLog", "deliveries"]

deliveries = Table(
    "icb_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("flow", String(32), nullable=False),
    Column("day", String(10), nullable=False),  # business day, YYYY-MM-DD (biller local)
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("records", Integer, nullable=False),
    Column("method", String(16), nullable=False),  # sftp | ftps | email
    Column("destination", String(512), nullable=False),  # conn id + path, or masked recipients
    # sending | delivered | failed
    Column("status", String(16), nullable=False),
    Column("run_id", String(255)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("message", Text),
    Index("ix_icb_deliveries_day", "biller_id", "flow", "day"),
)


@dataclass(frozen=True)
class Delivery:
    id: int
    biller_id: str
    flow: str
    day: str
    file_name: str
    sha256: str
    size: int
    records: int
    method: str
    destination: str
    status: str
    run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    message: str | None


class DeliveryLog:
    """The deliveries table. Every method is one short transaction."""

    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or make_engine(url or default_state_url())
        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def latest(self, biller_id: str, flow: str, day: date) -> Delivery | None:
        """The last attempt for the biller's day (None: never attempted)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(deliveries)
                .where(
                    deliveries.c.biller_id == biller_id,
                    deliveries.c.flow == flow,
                    deliveries.c.day == day.isoformat(),
                )
                .order_by(deliveries.c.id.desc())
                .limit(1)
            ).first()
        return Delivery(**row._mapping) if row is not None else None

    def last_delivered_day(self, biller_id: str, flow: str) -> date | None:
        """The latest business day with a ``delivered`` attempt (None: none yet)."""
        with self.engine.connect() as conn:
            day = conn.execute(
                select(deliveries.c.day)
                .where(deliveries.c.biller_id == biller_id, deliveries.c.flow == flow,
                       deliveries.c.status == "delivered")
                .order_by(deliveries.c.day.desc())
                .limit(1)
            ).scalar()
        return None if day is None else date.fromisoformat(day)

    def begin(
        self,
        *,
        biller_id: str,
        flow: str,
        day: date,
        file_name: str,
        sha256: str,
        size: int,
        records: int,
        method: str,
        destination: str,
        run_id: str | None,
    ) -> int:
        """Record an attempt as ``sending`` before anything goes out; returns its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                deliveries.insert().values(
                    biller_id=biller_id,
                    flow=flow,
                    day=day.isoformat(),
                    file_name=file_name,
                    sha256=sha256,
                    size=size,
                    records=records,
                    method=method,
                    destination=destination,
                    status="sending",
                    run_id=run_id,
                    started_at=now(),
                )
            )
            return int(result.inserted_primary_key[0])

    def finish(self, delivery_id: int, status: str, message: str | None = None) -> None:
        if status not in ("delivered", "failed"):
            raise ValueError("status must be 'delivered' or 'failed'")
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(status=status, finished_at=now(), message=message)
            )

    def settle(self, biller_id: str, flow: str, day: date, outcome: str) -> int:
        """Ops settle an in-doubt (``sending``) attempt: ``delivered`` (the biller has it) or
        ``failed`` (it never arrived: the next run sends it). Returns the rows changed."""
        if outcome not in ("delivered", "failed"):
            raise ValueError("outcome must be 'delivered' or 'failed'")
        with self.engine.begin() as conn:
            result = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.biller_id == biller_id,
                    deliveries.c.flow == flow,
                    deliveries.c.day == day.isoformat(),
                    deliveries.c.status == "sending",
                )
                .values(status=outcome, finished_at=now(), message=f"settled by ops as {outcome}")
            )
            return int(result.rowcount or 0)

    def history(self, biller_id: str | None = None, flow: str | None = None) -> list[Delivery]:
        """Every attempt, oldest first (ops and tests)."""
        query = select(deliveries).order_by(deliveries.c.id)
        if biller_id:
            query = query.where(deliveries.c.biller_id == biller_id)
        if flow:
            query = query.where(deliveries.c.flow == flow)
        with self.engine.connect() as conn:
            return [Delivery(**r._mapping) for r in conn.execute(query)]
