"""icbridge's Airflow plugin: the analysts' Balance All pages inside the Airflow UI.

* ``fastapi_apps``: the pages (icbridge.web.app), mounted by the api-server at ``/icbridge``.
  Airflow does not authenticate plugin apps; the app checks the caller's Airflow login itself.
* ``external_views``: a "Balance All" entry in the UI's Browse menu that shows the pages
  inside the Airflow UI (``url_route``), at ``/plugin/balance-all``; and "Integration health"
  (per biller and flow: watermark, lag, items in doubt) at ``/plugin/integration-health``;
  "Biller check" in the Admin menu: the onboarding preflight of each biller file.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from icbridge.web.app import URL_PREFIX, create_app


class IcbridgeReportsPlugin(AirflowPlugin):
    name = "icbridge_reports"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "icbridge reports"}]
    external_views = [
        {
            "name": "Balance All",
            "href": f"{URL_PREFIX.strip('/')}/balance-all/",  # relative to [api] base_url
            "destination": "nav",
            "category": "browse",
            "url_route": "balance-all",
        },
        {
            "name": "Biller check",
            "href": f"{URL_PREFIX.strip('/')}/billers/",
            "destination": "nav",
            "category": "admin",
            "url_route": "biller-check",
        },
        {
            "name": "Integration health",
            "href": f"{URL_PREFIX.strip('/')}/health/",
            "destination": "nav",
            "category": "browse",
            "url_route": "integration-health",
        },
    ]
