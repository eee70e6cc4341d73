"""Only logged-in Airflow users may see the reports: the caller's Airflow JWT, checked by Airflow.

Why this is needed: a plugin's ``fastapi_apps`` are mounted on the api-server *without* its
authentication (PITFALLS.md). The token is the one the Airflow UI login puts in the ``_token``
cookie, or an ``Authorization: Bearer`` header (REST clients, from ``POST /auth/token``). It is
validated by Airflow's own code (``resolve_user_from_token``: the auth manager's JWT validator,
signature, expiry, audience, revocation), and the user must be allowed to view plugins.

Anonymous or invalid: a browser asking for a page is redirected to Airflow's login page (and
comes back after logging in); anything else gets 401.

Per biller (issue 21): every page, download and list shows a biller only to a user the auth
manager lets read that biller's DAGs (:func:`readable_billers`); an action (Biller check: it
logs in with stored connections) needs the right to use connections, is a POST, and carries
the page's own token (:func:`csrf_token`, :func:`check_action`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class NotAuthenticated(Exception):  # noqa: N818 - reads as a state
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()  # an explicit credential wins over the ambient cookie, as in Airflow
    return request.cookies.get(COOKIE) or None


async def current_user(request: Request):  # -> BaseUser
    """FastAPI dependency: the Airflow user of this request, or NotAuthenticated / 403."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    token = _token(request)
    if not token:
        raise NotAuthenticated("not logged in")
    try:
        user = await resolve_user_from_token(token)
    except HTTPException as exc:  # expired, invalid signature, revoked, malformed
        raise NotAuthenticated(str(exc.detail)) from None
    if not get_auth_manager().is_authorized_view(access_view=AccessView.PLUGINS, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to view plugin pages")
    return user


def wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))


async def not_authenticated_handler(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, NotAuthenticated) else "not authenticated"
    if wants_html(request):
        return RedirectResponse(login_url(request), status_code=status.HTTP_303_SEE_OTHER)
    return JSONResponse(
        {"detail": f"Airflow login required: {reason}"},
        status_code=status.HTTP_401_UNAUTHORIZED,
        headers={"WWW-Authenticate": "Bearer"},
    )


# per biller: what the auth manager lets this user read ---------------------------------------------

BILLER_FLOWS = ("invoices", "payment_export", "balance_all", "balances", "payments", "customer_changes",
                "config_error")
"""The DAG-id suffixes a biller's DAGs can have (``<biller>__<flow>``)."""


def readable_dag_ids(user: Any, dag_ids: Iterable[str]) -> set[str]:
    """Of ``dag_ids``, those the auth manager lets ``user`` read (GET), asked in one batch."""
    from airflow.api_fastapi.app import get_auth_manager

    wanted = set(dag_ids)
    if not wanted:
        return set()
    return set(get_auth_manager().filter_authorized_dag_ids(dag_ids=wanted, user=user, method="GET"))


def readable_billers(user: Any, biller_ids: Iterable[str], flows: Iterable[str] = BILLER_FLOWS) -> set[str]:
    """Of ``biller_ids``, those of which ``user`` may read at least one DAG among ``flows``
    (Balance All pages ask for ``balance_all`` only). The auth manager decides, never a list
    of ours: FAB by the roles a biller file gives its DAGs (``access_control``), SimpleAuthManager
    by role alone (it has no per-DAG rights: every viewer reads every biller)."""
    by_dag = {f"{b}__{f}": b for b in biller_ids for f in flows}
    return {by_dag[d] for d in readable_dag_ids(user, by_dag)}


def require_biller(user: Any, biller_id: str, flows: Iterable[str] = BILLER_FLOWS) -> None:
    """403 unless ``user`` may read one of the biller's DAGs among ``flows``."""
    if biller_id not in readable_billers(user, [biller_id], flows):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to read this biller's DAGs")


def require_connections(user: Any) -> None:
    """403 unless ``user`` may read connections, as Airflow asks before it shows or uses one
    (SimpleAuthManager: op and admin; FAB: "can read on Connections")."""
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_connection(method="GET", user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to use connections (Airflow's op role or above)")


# actions: POST with the page's own token, from this site only ----------------------------------------

_TOKEN_TTL_S = 3600


def _csrf_key() -> bytes:
    from airflow.configuration import conf

    secret = conf.get("api_auth", "jwt_secret", fallback="") or conf.get("api", "secret_key", fallback="")
    return hashlib.sha256(b"icbridge-csrf\0" + secret.encode()).digest()


def csrf_token(user: Any, action: str, now: float | None = None) -> str:
    """A token for one user and one action (e.g. ``check:demo_aus``), valid an hour: put in the
    page's form, required by the POST. Another site cannot read it from our page."""
    stamp = str(int(now if now is not None else time.time()))
    mac = hmac.new(_csrf_key(), f"{_user_key(user)}\0{action}\0{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def check_action(request: Request, user: Any, action: str, token: str | None) -> None:
    """403 unless the request is a same-origin POST carrying this user's token for ``action``."""
    site = request.headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"refused: a request from another site ({site})")
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"refused: a request from another origin ({origin})")
    stamp, _, mac = (token or "").partition(".")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > _TOKEN_TTL_S:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: no valid form token (reload the page)")
    expected = csrf_token(user, action, now=int(stamp)).partition(".")[2]
    if not hmac.compare_digest(mac, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: no valid form token (reload the page)")


def _user_key(user: Any) -> str:
    for attr in ("get_id", "get_name"):
        try:
            return str(getattr(user, attr)())
        except Exception:  # noqa: BLE001, S112 - another user class: try the next
            continue
    return repr(user)
