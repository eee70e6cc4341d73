"""Deliveries of generated files to billers (Logis payment export): what was sent, where, when.

One row per attempt, on the shared state-DB ``metadata``. An attempt is recorded
``sending`` *before* the file goes out and ``delivered`` / ``failed`` after, so a crash in
between leaves a trace: a later run finds the ``sending`` row and either confirms the file
at the destination (FTP family: name, size and sha256 on the server) or, when it cannot
know (email), stops and asks a person (see docs/payment-export.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Column, DateTime, Engine, Index, Integer, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError

from icbridge.errors import StateError
from icbridge.state.db import default_state_url, make_engine, metadata, now
from icbridge.state.engine import inserted_id
from icbridge.state.schema import ensure_schema

__all__ = ["DayTaken", "Delivery", "DeliveryLog", "deliveries", "delivery_claims"]

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


delivery_claims = Table(
    "icb_delivery_claims",
    metadata,
    # one row while an execution builds or sends the (biller, flow, day); deleted when it is done
    Column("biller_id", String(64), primary_key=True),
    Column("flow", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("token", String(255), nullable=False),  # the execution (icbridge.state.executions)
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)


class DayTaken(StateError):  # noqa: N818 - the ops word
    """Another execution, still alive, holds the day: it builds and sends it; this one does nothing."""

    retry = True


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
        message: str | None = None,
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
                    message=message,
                )
            )
            return inserted_id(result)

    def finish(self, delivery_id: int, status: str, message: str | None = None, *, owner: str | None) -> bool:
        """An attempt's outcome. Changes the row only while it is still ``sending`` and owned by
        ``owner`` (the token that began it): False when it was not (another run, or a person,
        settled it meanwhile: that outcome stands)."""
        if status not in ("delivered", "failed"):
            raise ValueError("status must be 'delivered' or 'failed'")
        own = deliveries.c.run_id.is_(None) if owner is None else deliveries.c.run_id == owner
        with self.engine.begin() as conn:
            result = conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status == "sending", own)
                .values(status=status, finished_at=now(), message=message)
            )
        return result.rowcount == 1

    def attempts(self, biller_id: str, flow: str, day: date) -> list[Delivery]:
        """Every attempt for the biller's day, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries)
                .where(deliveries.c.biller_id == biller_id, deliveries.c.flow == flow,
                       deliveries.c.day == day.isoformat())
                .order_by(deliveries.c.id)
            ).all()
        return [Delivery(**r._mapping) for r in rows]

    def holds_day(self, biller_id: str, flow: str, day: date, token: str) -> bool:
        """Whether execution ``token`` still holds the day (checked right before the point of no
        return: a holder whose lease lapsed may have lost it to another run)."""
        with self.engine.connect() as conn:
            holder = conn.execute(select(delivery_claims.c.token).where(
                delivery_claims.c.biller_id == biller_id, delivery_claims.c.flow == flow,
                delivery_claims.c.day == day.isoformat())).scalar()
        return holder == token

    @contextlib.contextmanager
    def claim_day(self, biller_id: str, flow: str, day: date, token: str) -> Iterator[None]:
        """Hold the (biller, flow, day) for execution ``token`` while it builds and sends the day's
        file; released on exit. A claim held by a live execution raises :class:`DayTaken`
        naming it; one left by an execution that is gone (crash) is taken over, and what that
        execution left ``sending`` is then resolved as in doubt by the caller."""
        from icbridge.state.executions import owner

        key = (delivery_claims.c.biller_id == biller_id, delivery_claims.c.flow == flow,
               delivery_claims.c.day == day.isoformat())
        for _ in range(5):  # a holder that released or was taken over in between: look again
            try:
                with self.engine.begin() as conn:
                    conn.execute(delivery_claims.insert().values(biller_id=biller_id, flow=flow,
                                                                 day=day.isoformat(), token=token,
                                                                 claimed_at=now()))
                break
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                holder = conn.execute(select(delivery_claims.c.token).where(*key)).scalar()
            if holder is None:
                continue
            if holder == token:
                break
            running = owner(self.engine, holder)
            if running.alive:
                raise DayTaken(f"the {flow} of {day} for biller {biller_id} is being built and delivered by "
                               f"{running.describe()}: this run leaves it to that run (a retry finds the "
                               "day delivered)")
            with self.engine.begin() as conn:  # compare-and-set: only the holder we judged gone
                taken = conn.execute(update(delivery_claims).where(*key, delivery_claims.c.token == holder)
                                     .values(token=token, claimed_at=now()))
            if taken.rowcount == 1:
                break
        else:
            raise DayTaken(f"the {flow} of {day} for biller {biller_id}: the day's claim kept changing hands")
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(delete(delivery_claims).where(*key, delivery_claims.c.token == token))

    def settle(self, biller_id: str, flow: str, day: date, outcome: str, *, force: bool = False,
               by: str | None = None, reason: str | None = None) -> int:
        """Ops settle an in-doubt (``sending``) attempt: ``delivered`` (the biller has it) or
        ``failed`` (it never arrived: the next run sends it). Returns the rows changed.
        Raises icbridge.state.db.OwnerAlive while the execution sending it is alive, unless ``force``."""
        from icbridge.state.db import OwnerAlive
        from icbridge.state.executions import owner
        from icbridge.state.settlements import record

        if outcome not in ("delivered", "failed"):
            raise ValueError("outcome must be 'delivered' or 'failed'")
        if not (reason or "").strip():
            raise ValueError("a settlement needs a reason (what the biller said)")
        checked = [a for a in self.attempts(biller_id, flow, day) if a.status == "sending"]
        for attempt in checked:
            running = owner(self.engine, attempt.run_id)
            if running.alive and not force:
                raise OwnerAlive(f"{attempt.file_name} is being sent right now by {running.describe()}: settle "
                                 "only once that run has ended (or pass --force if you know it is dead)")
        message = f"settled by ops as {outcome}" + (f" by {by}" if by else "") + (" (forced)" if force else "")
        changed = 0
        with self.engine.begin() as conn:  # exactly the attempts judged above, each still as it was then
            for attempt in checked:
                own = deliveries.c.run_id.is_(None) if attempt.run_id is None else deliveries.c.run_id == attempt.run_id
                result = conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == attempt.id, deliveries.c.status == "sending", own)
                    .values(status=outcome, finished_at=now(), message=message)
                )
                changed += int(result.rowcount or 0)
            if changed:
                record(conn, kind="delivery", biller_id=biller_id, item=f"{flow} {day.isoformat()}",
                       from_status="sending", to_status=outcome, by=by, reason=reason, forced=force)
            return changed

    def history(self, biller_id: str | None = None, flow: str | None = None) -> list[Delivery]:
        """Every attempt, oldest first (ops and tests)."""
        query = select(deliveries).order_by(deliveries.c.id)
        if biller_id:
            query = query.where(deliveries.c.biller_id == biller_id)
        if flow:
            query = query.where(deliveries.c.flow == flow)
        with self.engine.connect() as conn:
            return [Delivery(**r._mapping) for r in conn.execute(query)]
