"""The analysts' Balance All pages: a FastAPI app the Airflow plugin mounts at ``/icbridge``.

Pages (all behind the caller's Airflow login, see :mod:`icbridge.web.auth`):

* ``/icbridge/balance-all/`` — runs per biller with their summary;
* ``/icbridge/balance-all/runs/{id}`` — one run: summary, the two charts (inline SVG), the
  item table (server-side sort, outcome filter and paging, for 100,000 rows);
* ``/icbridge/balance-all/runs/{id}/items.csv`` and ``.xlsx`` — the items (current filter
  and order), streamed;
* ``/icbridge/health/`` — Integration health: per biller and flow, last success, covered
  through, lag, items in doubt, files rejected in 7 days; sortable, worst first
  (icbridge.state.health).

Links are relative, so the pages work under any ``[api] base_url`` and inside the Airflow
UI's iframe (external view). Reads the state DB only.
"""


from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from icbridge.web import balance_all, health_pages
from icbridge.web.auth import NotAuthenticated, not_authenticated_handler
from icbridge.web.common import SECURITY_HEADERS
from icbridge.web.templates import ENV

URL_PREFIX = "/icbridge"


async def _error_page(request: Request, exc: Exception) -> Any:
    """A wrong URL or a bad query answers a page inside the Airflow UI frame, not raw JSON
    (a client that asks for JSON still gets FastAPI's ``{"detail": …}``)."""
    if not isinstance(exc, StarletteHTTPException):  # registered for that class only
        raise exc
    accept = request.headers.get("accept", "")
    if "text/html" not in accept and "*/*" not in accept and accept:
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)
    titles = {400: "Bad request", 401: "Not logged in", 403: "Not allowed", 404: "Not found"}
    depth = request.url.path.rstrip("/").count("/") - (request.scope.get("root_path", "").count("/"))
    response = ENV.get_template("error.html").render(
        status=exc.status_code, title=titles.get(exc.status_code, "Error"), detail=str(exc.detail),
        index_url="../" * max(depth - 1, 0) + "balance-all/",
    )
    return HTMLResponse(response, status_code=exc.status_code, headers={**SECURITY_HEADERS, **(exc.headers or {})})



def create_app() -> FastAPI:
    """The app the Airflow plugin mounts at :data:`URL_PREFIX` (plugins/icbridge_reports.py)."""
    app = FastAPI(title="icbridge reports", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(NotAuthenticated, not_authenticated_handler)
    app.add_exception_handler(StarletteHTTPException, _error_page)
    app.include_router(balance_all.router)
    app.include_router(health_pages.router)
    return app
