"""DAG callbacks: a failure says loudly which biller, run and rule, and where to look."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("icbridge.alerts")


def notify_failure(context: Any) -> None:
    """on_failure_callback: one ERROR line per failed task, for log-based alerting."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    log.error(
        "ICBRIDGE FAILURE dag=%s task=%s run=%s try=%s: %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        getattr(ti, "try_number", "?"),
        exc,
    )
