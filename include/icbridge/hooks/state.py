"""The state DB for tasks: icbridge.state.locate's rule (ICBRIDGE_STATE_DB_URL, else the
Airflow connection ``icbridge_state`` through the Task SDK, else the local default)."""

from __future__ import annotations

from icbridge.state.db import Ledger
from icbridge.state.locate import STATE_CONN_ID, locate_state_db

__all__ = ["STATE_CONN_ID", "get_ledger", "state_db_url"]


def state_db_url() -> str:
    return locate_state_db(in_task=True).url


def get_ledger() -> Ledger:
    return Ledger(state_db_url())
