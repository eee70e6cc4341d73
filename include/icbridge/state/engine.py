"""The state DB's engine: bounded in time, so a state DB that stops answering fails a task
with the state DB named, instead of hanging it.

Settings (environment, seconds; docs/deployment.md, "State DB timeouts"):

======================================  =======  ==================================================
``ICBRIDGE_STATE_DB_CONNECT_TIMEOUT``   10       TCP connect and the PostgreSQL start-up exchange
``ICBRIDGE_STATE_DB_STATEMENT_TIMEOUT`` 30       one statement: PostgreSQL's ``statement_timeout``
                                                 on the server, and the same bound (+5 s) on the
                                                 client's wait for any answer
``ICBRIDGE_STATE_DB_BUSY_TIMEOUT``      30       SQLite: how long a writer waits for the file lock
======================================  =======  ==================================================

PostgreSQL also gets TCP keepalives (idle 10 s, every 5 s, 3 probes). Keepalives and the
server's ``statement_timeout`` do not help when a proxy in between (pgbouncer, HAProxy, a
cloud SQL proxy) keeps the TCP connection open and forwards nothing: its kernel answers the
probes and the server never sees the statement. So the client bounds its own wait too,
through psycopg2's documented wait-callback hook (``psycopg2.extensions.set_wait_callback``):
for a connection of ours (``application_name=icbridge``) each wait on the socket ends after
the bound with psycopg2's ``OperationalError`` naming the state DB and the bound, the
connection's socket shut (SQLAlchemy then drops it from the pool). Other connections in the
process (Airflow's own) wait as psycopg2's ``wait_select`` does, without a bound. The hook is
process-wide: once installed, every psycopg2 connection of the process runs in psycopg2's
"green" (asynchronous) mode, where ``copy_expert``/``copy_from`` and large objects are not
available. Neither icbridge nor Airflow's metadata-DB code uses them; a custom operator in the
same worker that does would need its own process.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

__all__ = ["APPLICATION_NAME", "make_engine", "timeouts"]

APPLICATION_NAME = "icbridge"


def timeouts() -> dict[str, float]:
    """The three bounds in seconds, from the environment (defaults 10 / 30 / 30)."""
    return {
        "connect": float(os.environ.get("ICBRIDGE_STATE_DB_CONNECT_TIMEOUT", "10")),
        "statement": float(os.environ.get("ICBRIDGE_STATE_DB_STATEMENT_TIMEOUT", "30")),
        "busy": float(os.environ.get("ICBRIDGE_STATE_DB_BUSY_TIMEOUT", "30")),
    }


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine on the state DB with the bounds above (SQLite: WAL, foreign keys)."""
    bounds = timeouts()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": bounds["busy"]})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:  # WAL: readers don't block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql") and not url.startswith(("postgresql+asyncpg", "postgresql+psycopg:")):
        _install_wait_callback()
        connect_args = {
            "connect_timeout": max(1, int(bounds["connect"])),
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            "application_name": APPLICATION_NAME,
            # the URL's own options (e.g. -csearch_path=...) are kept, statement_timeout added
            "options": " ".join(filter(None, [str(make_url(url).query.get("options") or ""),
                                              f"-c statement_timeout={int(bounds['statement'] * 1000)}"])),
        }
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


_installed = False


def _install_wait_callback() -> None:
    global _installed
    if _installed:
        return
    import psycopg2.extensions

    current = psycopg2.extensions.get_wait_callback()
    if current is not None and current is not _bounded_wait:  # someone else's (e.g. gevent): keep it
        _installed = True
        return
    psycopg2.extensions.set_wait_callback(_bounded_wait)
    _installed = True


def _bound_for(conn: Any) -> float | None:
    dsn = getattr(conn, "dsn", "") or ""
    if f"application_name={APPLICATION_NAME}" not in dsn:
        return None
    bounds = timeouts()
    return bounds["statement"] + 5 if conn.status != 0 else bounds["connect"]  # 0: still connecting


def _bounded_wait(conn: Any) -> None:
    """psycopg2's ``wait_select``, with a deadline for icbridge's own connections."""
    import psycopg2
    import psycopg2.extensions as ext

    bound = _bound_for(conn)
    deadline = None if bound is None else time.monotonic() + bound
    while True:
        try:
            state = conn.poll()
            if state == ext.POLL_OK:
                return
            if state == ext.POLL_READ:
                readers, writers = [conn.fileno()], []
            elif state == ext.POLL_WRITE:
                readers, writers = [], [conn.fileno()]
            else:
                raise psycopg2.OperationalError(f"bad state from poll: {state}")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                _shut(conn.fileno())  # not conn.close(): psycopg2 holds the connection's lock while it waits
                raise psycopg2.OperationalError(  # "could not receive data": SQLAlchemy's words for a disconnect
                    f"could not receive data from server: the state DB did not answer within {bound:.0f} s (a "
                    "network partition, or a proxy that forwards nothing); ICBRIDGE_STATE_DB_STATEMENT_TIMEOUT / "
                    "_CONNECT_TIMEOUT set the bound")
            select.select(readers, writers, [], left)
        except KeyboardInterrupt:
            conn.cancel()
            continue


def _shut(fd: int) -> None:
    """Shut the connection's socket both ways, so every later use of it fails at once."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def inserted_id(result: Any) -> int:
    """The primary key an INSERT of one row gave (a CursorResult of ``conn.execute(insert)``)."""
    key = result.inserted_primary_key
    if key is None:
        raise ValueError("the INSERT returned no primary key")
    return int(key[0])
