"""The api-server app in a TestClient, shared by the web tests (module-scoped: one app per module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def api():
    """Airflow's api-server app (core API, UI, auth manager, plugins) and a client on it."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    app = create_app("core")
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        yield client
