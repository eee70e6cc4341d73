"""Watermarks and done items: how far each periodic flow got, and what it already did.

``icb_watermarks`` - one row per (biller, flow): ``covered_through``, the point up to which
every item was handled (for ``payment_export`` the closure of the last business day
exported). It only moves forward (compare-and-set in SQL), so a backfill or a cleared run
of an old interval never moves it back. The same row keeps the last run's outcome for the
Integration health page.

``icb_sync_items`` - the natural keys a flow already handled, so the lookback overlap (and
any re-run or backfill) never repeats a CIS or IC call: customer changes by their identity
(account, type, value, ChangedAt), balances by the activity that made an account active (a
payment or a change). Keys are sha256 digests: no email address or value is stored.
Payments need no row here: ``icb_payment_posts`` already keeps them once per PaymentGUID.

Times are stored in UTC (SQLite keeps no offset) and returned time-zone aware. No Airflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, Text, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError

from icbridge.state.db import default_state_url, make_engine, metadata, now
from icbridge.state.schema import ensure_schema

__all__ = ["DoneItem", "SyncItems", "Watermark", "Watermarks", "item_key", "sync_items", "watermarks"]

watermarks = Table(
    "icb_watermarks",
    metadata,
    Column("biller_id", String(64), primary_key=True),
    Column("flow", String(32), primary_key=True),
    Column("covered_through", DateTime(timezone=True)),  # UTC; NULL: no run has covered anything yet
    Column("covered_by_run", String(255)),
    Column("last_run_at", DateTime(timezone=True)),
    Column("last_run_id", String(255)),
    Column("last_outcome", String(16)),  # success | failed
    Column("last_message", Text),
    Column("last_success_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

sync_items = Table(
    "icb_sync_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("flow", String(32), nullable=False),
    Column("item_key", String(64), nullable=False),  # sha256 of the natural key
    Column("account_number", String(64), nullable=False),  # IC's (whole; masked in logs)
    Column("kind", String(32), nullable=False),  # paperless | autopay | email | payment | change ...
    Column("item_time", DateTime(timezone=True)),  # UTC: ChangedAt / PaymentDate
    Column("outcome", String(32), nullable=False),
    Column("run_id", String(255)),
    Column("done_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("biller_id", "flow", "item_key", name="uq_icb_sync_item"),
)


def utc(moment: datetime | None) -> datetime | None:
    """Aware UTC for storing; a naive value read back from SQLite is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_iso(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def item_key(*parts: object) -> str:
    """The stored key of a natural key: sha256 over its parts (times in UTC ISO form)."""
    text = "\x1f".join(_utc_iso(p) if isinstance(p, datetime) else ("" if p is None else str(p))
                       for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Watermark:
    biller_id: str
    flow: str
    covered_through: datetime | None
    covered_by_run: str | None
    last_run_at: datetime | None
    last_run_id: str | None
    last_outcome: str | None
    last_message: str | None
    last_success_at: datetime | None


def _mark(r) -> Watermark:
    return Watermark(r.biller_id, r.flow, utc(r.covered_through), r.covered_by_run, utc(r.last_run_at),
                     r.last_run_id, r.last_outcome, r.last_message, utc(r.last_success_at))


class Watermarks:
    """The ``icb_watermarks`` table. Every method is one short transaction."""

    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or make_engine(url or default_state_url())
        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def _key(self, biller_id: str, flow: str) -> tuple:
        return (watermarks.c.biller_id == biller_id, watermarks.c.flow == flow)

    def _ensure(self, biller_id: str, flow: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(watermarks.insert().values(biller_id=biller_id, flow=flow, updated_at=now()))
        except IntegrityError:
            pass

    def get(self, biller_id: str, flow: str) -> Watermark | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(watermarks).where(*self._key(biller_id, flow))).first()
        return None if r is None else _mark(r)

    def covered_through(self, biller_id: str, flow: str) -> datetime | None:
        mark = self.get(biller_id, flow)
        return None if mark is None else mark.covered_through

    def advance(self, biller_id: str, flow: str, to: datetime, run_id: str | None = None) -> datetime:
        """Move the watermark to ``to`` unless it is already there or further; never back.
        Returns the watermark after the call."""
        target = utc(to)
        self._ensure(biller_id, flow)
        with self.engine.begin() as conn:
            conn.execute(
                update(watermarks)
                .where(*self._key(biller_id, flow),
                       watermarks.c.covered_through.is_(None) | (watermarks.c.covered_through < target))
                .values(covered_through=target, covered_by_run=run_id, updated_at=now())
            )
        mark = self.covered_through(biller_id, flow)
        assert mark is not None
        return mark

    def record_run(self, biller_id: str, flow: str, *, run_id: str | None, ok: bool, message: str | None) -> None:
        """The last run's outcome (for the health page); the watermark is not touched."""
        self._ensure(biller_id, flow)
        stamp = now()
        values = {"last_run_at": stamp, "last_run_id": run_id, "last_outcome": "success" if ok else "failed",
                  "last_message": (message or "")[:2000] or None, "updated_at": stamp}
        if ok:
            values["last_success_at"] = stamp
        with self.engine.begin() as conn:
            conn.execute(update(watermarks).where(*self._key(biller_id, flow)).values(**values))

    def all(self) -> list[Watermark]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(watermarks).order_by(watermarks.c.biller_id, watermarks.c.flow))
            return [_mark(r) for r in rows]


@dataclass(frozen=True)
class DoneItem:
    key: str
    account_number: str
    kind: str
    item_time: datetime | None
    outcome: str


class SyncItems:
    """The ``icb_sync_items`` table: natural keys a flow already handled."""

    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or make_engine(url or default_state_url())
        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def done(self, biller_id: str, flow: str, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` already handled."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(conn.execute(
                    select(sync_items.c.item_key).where(
                        sync_items.c.biller_id == biller_id, sync_items.c.flow == flow,
                        sync_items.c.item_key.in_(chunk))
                ).scalars())
        return found

    def latest(self, biller_id: str, flow: str, accounts: Iterable[str], kind: str,
               outcomes: Iterable[str] | None = None) -> dict[str, datetime]:
        """Account -> the newest ``item_time`` handled of ``kind`` (optionally only ``outcomes``)."""
        wanted = list(dict.fromkeys(accounts))
        out: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = (
                    select(sync_items.c.account_number, func.max(sync_items.c.item_time))
                    .where(sync_items.c.biller_id == biller_id, sync_items.c.flow == flow,
                           sync_items.c.kind == kind, sync_items.c.account_number.in_(wanted[start : start + 500]),
                           sync_items.c.item_time.is_not(None))
                    .group_by(sync_items.c.account_number)
                )
                if outcomes is not None:
                    query = query.where(sync_items.c.outcome.in_(list(outcomes)))
                for account, latest in conn.execute(query):
                    out[account] = utc(latest)  # type: ignore[assignment]
        return out

    def mark_done(self, biller_id: str, flow: str, items: Iterable[DoneItem], run_id: str | None) -> int:
        """Record handled items; one already recorded is left as it is. Returns rows added."""
        todo = {item.key: item for item in items}
        todo = {k: v for k, v in todo.items() if k not in self.done(biller_id, flow, todo)}
        rows = [dict(biller_id=biller_id, flow=flow, item_key=i.key, account_number=i.account_number, kind=i.kind,
                     item_time=utc(i.item_time), outcome=i.outcome, run_id=run_id, done_at=now())
                for i in todo.values()]
        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                conn.execute(sync_items.insert(), rows)
            return len(rows)
        except IntegrityError:  # another run recorded some of them meanwhile: one by one
            pass
        added = 0
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(sync_items.insert().values(**row))
                added += 1
            except IntegrityError:
                pass
        return added

    def prune(self, biller_id: str, flow: str, before: datetime) -> int:
        """Forget items whose time is before ``before`` (far behind the watermark: only a
        backfill that old could read them again). Returns the rows deleted."""
        with self.engine.begin() as conn:
            result = conn.execute(sync_items.delete().where(
                sync_items.c.biller_id == biller_id, sync_items.c.flow == flow,
                sync_items.c.item_time < utc(before)))
            return int(result.rowcount or 0)

    def count(self, biller_id: str | None = None, flow: str | None = None) -> int:
        query = select(func.count()).select_from(sync_items)
        if biller_id:
            query = query.where(sync_items.c.biller_id == biller_id)
        if flow:
            query = query.where(sync_items.c.flow == flow)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
