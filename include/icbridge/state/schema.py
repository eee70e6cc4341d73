"""The state DB's schema: created or upgraded once, under a lock, with a version ops can read.

Why: two first-ever tasks on a fresh PostgreSQL state DB raced on ``CREATE TABLE`` (one
failed with ``UniqueViolation`` on ``pg_type``). Every store calls :func:`ensure_schema`
before its first statement; it runs at most once per process and state DB, and the work
itself is serialised across processes:

* PostgreSQL: ``pg_advisory_xact_lock`` in the transaction that creates the tables (DDL is
  transactional there, so a second process waits and then finds them);
* SQLite: an exclusive ``flock`` on ``<file>.schema-lock`` beside the database file.

The version is kept in ``icb_schema`` (one row: ``SELECT version FROM icb_schema``) and
printed by ``python -m icbridge state-db version``; ``python -m icbridge state-db upgrade``
runs the same step by hand (docs/operations.md). Upgrades add tables, which the step creates
when missing, and columns with a default (:data:`ADDED_COLUMNS`, ``ALTER TABLE … ADD COLUMN``
where missing, on SQLite and PostgreSQL alike); a state DB whose version is newer than this
code is refused.

=======  ======================================================================
version  what
=======  ======================================================================
1        ledgers, deliveries, watermarks, Balance All (before this table)
2        ``icb_executions`` (leases of running executions), ``icb_delivery_claims``
3        ``icb_settlements`` (who settled what, when and why)
4        ``icb_alert_incidents`` (one alert per incident)
5        ``icb_balance_runs.total_mismatches``, ``icb_balance_items.change/open_since/
         previous_outcome``; ``icb_balance_resolved``, ``icb_balance_comparisons`` (what
         changed against the previous weekly run)
=======  ======================================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Column, Connection, DateTime, Engine, Integer, Table, inspect, select, text

from icbridge.errors import StateError
from icbridge.state.db import metadata, now

__all__ = ["SCHEMA_VERSION", "SchemaTooNew", "ensure_schema", "schema_version"]

SCHEMA_VERSION = 5

ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("icb_balance_runs", "total_mismatches", "NOT NULL DEFAULT 0"),  # 5
    ("icb_balance_items", "change", ""),  # 5
    ("icb_balance_items", "open_since", ""),  # 5
    ("icb_balance_items", "previous_outcome", ""),  # 5
)
"""Columns added to a table that already existed: (table, column, what follows its type, which
is the metadata's, compiled for the state DB's dialect)."""

schema_table = Table(
    "icb_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

_done: set[str] = set()
_guard = threading.Lock()
_LOCK_KEY = 0x1CB5C4E  # pg_advisory_xact_lock key: "icbridge schema"


class SchemaTooNew(StateError):
    """The state DB was upgraded by a newer icbridge than this one."""


def _all_tables() -> None:
    """Import every module that defines state tables, so ``metadata`` holds them all."""
    from icbridge.state import (  # noqa: F401
        alerts,
        balance_changes,
        deliveries,
        executions,
        payments,
        reconcile,
        settlements,
        watermarks,
    )


def ensure_schema(engine: Engine) -> int:
    """Create the missing tables and record :data:`SCHEMA_VERSION`, once per process and URL,
    serialised across processes (see the module docstring). Returns the version.
    Raises :class:`SchemaTooNew` when the DB's version is newer than this code's."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _done:
        return SCHEMA_VERSION
    with _guard:
        if key in _done:
            return SCHEMA_VERSION
        _all_tables()
        with _process_lock(engine), engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            metadata.create_all(conn)
            _add_columns(conn)
            found = conn.execute(select(schema_table.c.version).where(schema_table.c.id == 1)).scalar()
            if found is not None and found > SCHEMA_VERSION:
                raise SchemaTooNew(f"the state DB is at schema version {found}, this icbridge knows "
                                   f"{SCHEMA_VERSION}: upgrade icbridge on this machine")
            if found is None:
                conn.execute(schema_table.insert().values(id=1, version=SCHEMA_VERSION, updated_at=now()))
            elif found < SCHEMA_VERSION:
                conn.execute(schema_table.update().where(schema_table.c.id == 1)
                             .values(version=SCHEMA_VERSION, updated_at=now()))
        _done.add(key)
    return SCHEMA_VERSION


def _add_columns(conn: Connection) -> None:
    """Each of :data:`ADDED_COLUMNS` a table created by an earlier version lacks (a table
    ``create_all`` just made has them already)."""
    found = inspect(conn)
    for table, column, rest in ADDED_COLUMNS:
        if column not in {c["name"] for c in found.get_columns(table)}:
            kind = metadata.tables[table].c[column].type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind} {rest}".rstrip()))


def schema_version(engine: Engine) -> int | None:
    """The version recorded in the state DB (None: no icbridge schema there yet)."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, schema_table.name):
            return None
        return conn.execute(select(schema_table.c.version).where(schema_table.c.id == 1)).scalar()


@contextlib.contextmanager
def _process_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(Path(f"{database}.schema-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
