"""Where the state DB is — one answer for the DAGs, the CLI and the report pages.

In this order:

1. ``ICBRIDGE_STATE_DB_URL`` (any SQLAlchemy URL) — what the demo and docker-compose set;
2. the Airflow connection ``icbridge_state`` (its URI), found the caller's way: a task asks the
   Task SDK; the api-server and the CLI ask Airflow's secrets backends (environment
   ``AIRFLOW_CONN_ICBRIDGE_STATE``, then the metadata DB) — the CLI only when ``AIRFLOW_HOME``
   is set, so that it never makes an Airflow home by looking;
3. ``sqlite:///$ICBRIDGE_HOME/state.db`` (``ICBRIDGE_HOME`` defaults to ``$AIRFLOW_HOME/icbridge``).

:func:`locate_state_db` says which of them answered (the CLI prints it). No Airflow import at
module level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

__all__ = ["STATE_CONN_ID", "STATE_URL_ENV", "StateDb", "default_state_path", "locate_state_db"]

STATE_URL_ENV = "ICBRIDGE_STATE_DB_URL"
STATE_CONN_ID = "icbridge_state"


@dataclass(frozen=True)
class StateDb:
    url: str
    source: str  # where the URL came from, for people

    @property
    def sqlite_path(self) -> Path | None:
        """The file of a SQLite URL (None for another database or in-memory)."""
        prefix = "sqlite:///"
        if not self.url.startswith(prefix) or self.url in (prefix, "sqlite:///:memory:"):
            return None
        return Path(self.url[len(prefix):])

    def describe(self) -> str:
        return f"{self.url} (from {self.source})"


def default_state_path() -> Path:
    home = os.environ.get("ICBRIDGE_HOME") or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")) / "icbridge"
    return Path(home).expanduser() / "state.db"


def _connection_uri(in_task: bool) -> str | None:
    try:
        if in_task:
            from airflow.sdk.bases.hook import BaseHook

            conn = BaseHook.get_connection(STATE_CONN_ID)
        else:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(STATE_CONN_ID)
    except Exception:  # not defined (AirflowNotFoundException), or no Airflow to ask
        return None
    uri = conn.get_uri().replace("postgres://", "postgresql://", 1)
    if uri.startswith("sqlite://"):  # Airflow quotes a file path's slashes into its host (%2F)
        rest = uri.removeprefix("sqlite://")
        uri = "sqlite:///" + unquote(rest[1:] if rest.startswith("/") else rest)
    return uri


def locate_state_db(*, in_task: bool = False, ask_airflow: bool = True) -> StateDb:
    """The state DB's URL and where it came from (module docstring). ``ask_airflow=False``
    skips step 2 (the CLI without AIRFLOW_HOME)."""
    if os.environ.get(STATE_URL_ENV):
        return StateDb(os.environ[STATE_URL_ENV], STATE_URL_ENV)
    if ask_airflow:
        uri = _connection_uri(in_task)
        if uri:
            return StateDb(uri, f"the Airflow connection {STATE_CONN_ID}")
    return StateDb(f"sqlite:///{default_state_path()}", "the default (ICBRIDGE_HOME, else $AIRFLOW_HOME/icbridge)")
