"""Only logged-in Airflow users may see the reports: the caller's Airflow JWT, checked by Airflow.

Why this is needed: a plugin's ``fastapi_apps`` are mounted on the api-server *without* its
authentication (PITFALLS.md). The token is the one the Airflow UI login puts in the ``_token``
cookie, or an ``Authorization: Bearer`` header (REST clients, from ``POST /auth/token``). It is
validated by Airflow's own code (``resolve_user_from_token``: the auth manager's JWT validator,
signature, expiry, audience, revocation), and the user must be allowed to view plugins.

Anonymous or invalid: a browser asking for a page is redirected to Airflow's login page (and
comes back after logging in); anything else gets 401.
"""

from __future__ import annotations

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
