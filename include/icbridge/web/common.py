"""What every page of the icbridge web app shares: the state DB's store, the security headers,
the HTML renderer, the user's name and the billers' time zones."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import Depends
from fastapi.responses import HTMLResponse

from icbridge.state.locate import locate_state_db
from icbridge.state.reconcile import ReconcileStore
from icbridge.web.auth import current_user
from icbridge.web.templates import ENV

__all__ = ["SECURITY_HEADERS", "USER", "cell", "get_store", "render", "state_url", "user_name"]

# Pages are framed by the Airflow UI (same origin) and load nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
USER = Depends(current_user)
"""The logged-in Airflow user of a request (icbridge.web.auth)."""


def state_url() -> str:
    """icbridge.state.locate's rule, the api-server's way (Airflow's secrets backends)."""
    return locate_state_db().url


@functools.lru_cache(maxsize=4)
def _store(url: str) -> ReconcileStore:
    return ReconcileStore(url)


def get_store() -> ReconcileStore:
    return _store(state_url())


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(template).render(**context), headers=SECURITY_HEADERS)


def user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:
        return "?"

