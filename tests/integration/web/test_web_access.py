"""Every route of the pages against Airflow's real api-server and SimpleAuthManager (issue 21):
anonymous, each role, and actions from another site. The table must name every route the app
has: a new route without a rule fails here."""

from __future__ import annotations

import re

import pytest

from icbridge.state.reconcile import ReconcileStore
from tests.support.web import HTML, bearer, seed_runs, token

pytestmark = pytest.mark.usefixtures("airflow_db")

# route -> the lowest SimpleAuthManager role that gets it (VIEWER: reading a biller's DAGs; OP: using connections)
RULES = {
    ("GET", "/balance-all/"): "VIEWER",
    ("GET", "/balance-all/runs/{run_id}"): "VIEWER",
    ("GET", "/balance-all/runs/{run_id}/items.csv"): "VIEWER",
    ("GET", "/balance-all/runs/{run_id}/items.xlsx"): "VIEWER",
    ("GET", "/health/"): "VIEWER",
    ("GET", "/health/rows.json"): "VIEWER",
    ("GET", "/health/{biller_id}/doubts"): "VIEWER",
    ("GET", "/billers/"): "VIEWER",
    ("GET", "/billers/{biller_id}/check"): "OP",
    ("POST", "/billers/{biller_id}/check"): "OP",
}
REDIRECTS = {"/", "/balance-all", "/health", "/billers"}  # 307 to the page, no data
ROLES = ["VIEWER", "USER", "OP", "ADMIN"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", url)
    billers = tmp_path / "billers"
    billers.mkdir()
    (billers / "bill_a.yaml").write_text("biller_id: bill_a\n")  # broken on purpose: the check fails fast
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    store = ReconcileStore(url)
    run_id = seed_runs(store)
    yield run_id
    store.dispose()


def _app_routes():
    from icbridge.web.app import create_app

    for route in create_app().routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, route.path


def test_every_route_has_a_rule():
    routes = set(_app_routes())
    assert {r for r in routes if r[1] not in REDIRECTS} == set(RULES), "a route without an access rule"


def _url(path: str, run_id: int) -> str:
    return "/icbridge" + path.format(run_id=run_id, biller_id="bill_a")


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_role_table(api, world, method, path):  # noqa: F811
    url = _url(path, world)
    assert api.request(method, url).status_code == 401  # anonymous
    for role in ROLES:
        got = api.request(method, url, headers=bearer(token(f"u_{role.lower()}", role)),
                          content=b"token=x" if method == "POST" else None)
        allowed = ROLES.index(role) >= ROLES.index(RULES[(method, path)])
        if method == "POST":  # even allowed, a POST without the page's token is refused
            assert got.status_code == 403, (role, got.status_code)
            assert ("form token" in got.text) == allowed, (role, got.text)
        else:
            assert (got.status_code == 200) == allowed, (role, got.status_code, got.text[:200])
            if not allowed:
                assert got.status_code == 403


def _form(api, role: str = "OP") -> tuple[dict, str]:  # noqa: F811
    headers = {**bearer(token(f"u_{role.lower()}", role)), **HTML}
    page = api.get("/icbridge/billers/bill_a/check", headers=headers)
    assert page.status_code == 200, page.text
    assert "Field required" not in page.text  # the GET ran nothing
    [value] = re.findall(r'name="token" value="([^"]+)"', page.text)
    return headers, value


def test_biller_check_runs_only_as_a_same_origin_post_with_the_pages_token(api, world):  # noqa: F811
    headers, value = _form(api)
    ok = api.post("/icbridge/billers/bill_a/check", headers={**headers, "Origin": "http://127.0.0.1"},
                  content=f"token={value}")
    assert ok.status_code == 200 and "Field required" in ok.text  # it ran (the file is broken)
    for extra, why in (({"Origin": "https://evil.example"}, "another origin"),
                       ({"Sec-Fetch-Site": "cross-site"}, "another site")):
        refused = api.post("/icbridge/billers/bill_a/check", headers={**headers, **extra}, content=f"token={value}")
        assert refused.status_code == 403 and why in refused.text and "Field required" not in refused.text
    other_headers, _ = _form(api, "ADMIN")  # another user's token is not this user's
    stolen = api.post("/icbridge/billers/bill_a/check", headers=other_headers, content=f"token={value}")
    assert stolen.status_code == 403 and "form token" in stolen.text
    assert api.get("/icbridge/billers/bill_a/check?token=" + value, headers=headers).status_code == 200
    assert "Field required" not in api.get("/icbridge/billers/bill_a/check", headers=headers).text  # GET: never
