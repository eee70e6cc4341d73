"""Executions: which task execution owns a ledger row, and whether it is still alive.

Why: a row left ``sending`` (an upload part, a payment, a delivery) means two different
things. If the execution that wrote it is still running, it is *being sent* and another
run must leave it alone and name that run; if that execution is gone, the call went out
and no answer was recorded: it is *in doubt* for a person. Airflow's own task state cannot
tell these apart in time (a killed worker stays "running" for the heartbeat timeout, and a
try executed twice has one state), so every execution registers itself here and keeps a
lease alive while it runs.

* The **token** names one execution, never just the task try:
  ``<run_id>#try<n>#<12 hex>``, a fresh random suffix per execution. A try that Airflow
  happens to execute twice (a duplicate start) gets two tokens, so the second never takes
  the first's rows for its own (issue 22, item 1).
* ``icb_executions.heartbeat_at`` is renewed every ``HEARTBEAT_SECONDS`` by a thread of
  the execution; the execution is *alive* while it has not ended and its last heartbeat is
  younger than the lease (``ICBRIDGE_LEASE_SECONDS``, default 60 s). Both the heartbeat and
  its age are the state DB's clock (``now()`` there), so a worker whose clock is off is not
  judged by it. A row whose token is not in the table (written by a CLI, a test, or a version
  before this table) has no live owner. Ended executions older than 30 days are pruned.

No Airflow imports; the operators start an :class:`Execution` per task execution
(icbridge.operators.common.task_execution).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from icbridge.state.db import metadata, now

__all__ = ["HEARTBEAT_SECONDS", "Execution", "Owner", "executions", "lease", "owner", "run_of"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0

executions = Table(
    "icb_executions",
    metadata,
    Column("token", String(255), primary_key=True),
    Column("dag_id", String(250)),
    Column("task_id", String(250)),
    Column("run_id", String(255)),
    Column("try_number", Integer),
    Column("hostname", String(255)),
    Column("pid", Integer),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)


def lease() -> timedelta:
    """How long an execution counts as alive after its last heartbeat (``ICBRIDGE_LEASE_SECONDS``, 60)."""
    return timedelta(seconds=float(os.environ.get("ICBRIDGE_LEASE_SECONDS", "60")))


def run_of(token: str | None) -> str:
    """The Airflow run id in a token (``<run_id>#try<n>#<hex>`` -> ``<run_id>``); a plain run id as it is."""
    return (token or "-").split("#try", 1)[0]


def _clock(engine: Engine):
    """The state DB's own ``now`` as a SQL expression (SQLite's CURRENT_TIMESTAMP has whole seconds only)."""
    if engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f000", "now")  # UTC, microseconds: as SQLAlchemy stores ours
    return func.now()


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite keeps no offset


@dataclass(frozen=True)
class Owner:
    """The execution behind a token, as the state DB knows it."""

    token: str
    alive: bool
    known: bool  # False: no execution was registered under this token
    dag_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    hostname: str | None = None
    pid: int | None = None
    heartbeat_at: datetime | None = None
    ended_at: datetime | None = None

    def describe(self) -> str:
        """``run R (task T try N on host H, pid P, alive: last heartbeat 4 s ago)`` for messages."""
        run = run_of(self.token)
        if not self.known:
            return f"run {run}"
        where = f"{self.dag_id}.{self.task_id} try {self.try_number} on host {self.hostname}, pid {self.pid}"
        if self.ended_at is not None:
            state = f"ended {_utc(self.ended_at):%Y-%m-%d %H:%M:%S} UTC"
        else:
            age = int((now() - _utc(self.heartbeat_at or now())).total_seconds())
            state = f"{'alive' if self.alive else 'gone'}: last heartbeat {age} s ago"
        return f"run {run} ({where}, {state})"


def owner(engine: Engine, token: str | None) -> Owner:
    """The execution that wrote ``token``; ``alive`` only while it has not ended and its lease holds."""
    if not token:
        return Owner("", alive=False, known=False)
    with engine.connect() as conn:
        r = conn.execute(select(executions, _clock(engine).label("db_now")).where(executions.c.token == token)).first()
    if r is None:
        return Owner(token, alive=False, known=False)
    alive = r.ended_at is None and _utc(r.heartbeat_at) >= _utc(r.db_now) - lease()
    return Owner(token, alive, True, r.dag_id, r.task_id, r.try_number, r.hostname, r.pid, r.heartbeat_at,
                 r.ended_at)


class Execution:
    """One task execution, registered with a lease kept alive by a heartbeat thread.

    Use as a context manager: ``with Execution(engine, dag_id=…, task_id=…, run_id=…,
    try_number=…) as ex: … ex.token …``. A heartbeat that cannot reach the state DB is
    logged and tried again; if the lease lapses meanwhile, other runs treat this
    execution's ``sending`` rows as in doubt (never as free to send).
    """

    def __init__(self, engine: Engine, *, dag_id: str | None, task_id: str | None, run_id: str,
                 try_number: int | None, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.engine = engine
        # at most 200 characters of the run id (Airflow allows 250): the token fits the ledgers' 255
        self.token = f"{run_id[:200]}#try{try_number if try_number is not None else 0}#{secrets.token_hex(6)}"
        self._row = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "try_number": try_number,
                     "hostname": socket.gethostname(), "pid": os.getpid()}
        self._every = heartbeat_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Execution:
        with self.engine.begin() as conn:
            clock = _clock(self.engine)
            conn.execute(executions.insert().values(token=self.token, started_at=clock, heartbeat_at=clock,
                                                    **self._row))
            conn.execute(delete(executions).where(executions.c.ended_at.is_not(None),
                                                  executions.c.ended_at < now() - timedelta(days=30)))
        self._thread = threading.Thread(target=self._beat, name="icb-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._every + 5)
        try:
            with self.engine.begin() as conn:
                conn.execute(update(executions).where(executions.c.token == self.token).values(ended_at=now()))
        except SQLAlchemyError:  # the lease lapses by itself; the task's own error matters more
            log.warning("could not record the end of execution %s in the state DB", self.token, exc_info=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(executions).where(executions.c.token == self.token)
                                 .values(heartbeat_at=_clock(self.engine)))
            except SQLAlchemyError as exc:
                log.warning("state DB heartbeat of %s failed (the lease lapses after %s): %s", self.token,
                            lease(), exc)
