"""Where the state DB is: ICBRIDGE_STATE_DB_URL, else the Airflow connection
`icbridge_state` (any SQLAlchemy URL, e.g. postgresql://...), else a local SQLite file."""

from __future__ import annotations

import os

from icbridge.state.db import STATE_URL_ENV, Ledger, default_state_url

STATE_CONN_ID = "icbridge_state"


def state_db_url() -> str:
    if os.environ.get(STATE_URL_ENV):
        return os.environ[STATE_URL_ENV]
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(STATE_CONN_ID)
    except AirflowNotFoundException:
        return default_state_url()
    uri = conn.get_uri()
    return uri.replace("postgres://", "postgresql://", 1)


def get_ledger() -> Ledger:
    return Ledger(state_db_url())
