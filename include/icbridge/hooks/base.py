"""What every icbridge hook shares: a connection that does not exist fails the task at once.

Why: a missing connection is not something a retry fixes. With the biller's retries (2, 4, 8
minutes) a task whose connection id was mistyped showed as failed only ~14 minutes later, and a
run triggered by hand waited behind it (max_active_runs=1) with no hint why.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from icbridge.errors import ConfigError

__all__ = ["ConnectionMissing", "FailFastConnection"]


class ConnectionMissing(ConfigError, AirflowFailException):
    """The connection is not defined anywhere Airflow looks: fail now, say what to do."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(
            f"the connection {conn_id!r} is not defined: create it (Admin › Connections, a secrets backend or "
            f"AIRFLOW_CONN_{conn_id.upper()}) or fix the connection id in the biller file; no retry can fix this"
        )
        self.conn_id = conn_id


class FailFastConnection:
    """Mixin for hooks (first base): ``get_connection`` raises ConnectionMissing (no retry)."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        try:
            return super().get_connection(conn_id)  # type: ignore[misc]
        except Exception as exc:
            if type(exc).__name__ != "AirflowNotFoundException":  # the SDK's or core's class alike
                raise
            raise ConnectionMissing(conn_id) from exc
