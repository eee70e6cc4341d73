"""The pages under Airflow's FAB auth manager (the one docker-compose.yaml runs), in a real
`airflow api-server`: two billers whose files give their DAGs to one role each
(``access_roles``), users of each role and a Viewer. Every page, download and list answers a
user only about the biller whose DAGs FAB lets them read (issue 21). The tables printed here
are the closing note's."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from icbridge.state.reconcile import ReconcileStore
from icbsim.local_airflow import Airflow, airflow_env, free_port, start_airflow
from tests.support.services import REPO
from tests.support.web import seed_runs

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
USERS = {"ana": "role_a", "bob": "role_b"}


class _NoSims:
    def env(self) -> dict[str, str]:
        return {}


def _airflow(env: dict, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, check=True, capture_output=True,
                   timeout=300, cwd=env["AIRFLOW_HOME"])


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    pytest.importorskip("airflow.providers.fab")
    home = tmp_path_factory.mktemp("fab")
    billers = home / "billers"
    billers.mkdir()
    template = (REPO / "include" / "billers" / "demo_inhance.yaml").read_text()
    for biller_id, role in (("fab_a", "role_a"), ("fab_b", "role_b")):
        (billers / f"{biller_id}.yaml").write_text(template.replace("demo_inhance", biller_id)
                                                   + f"access_roles: [{role}]\n")
    airflow_home = home / "airflow"
    airflow_home.mkdir()
    port = free_port()
    state_url = f"sqlite:///{home / 'state.db'}"
    env, _ = airflow_env(home, airflow_home, port, _NoSims(), state_url)  # type: ignore[arg-type]
    env.update(AIRFLOW__CORE__AUTH_MANAGER=FAB, ICBRIDGE_BILLERS_DIR=str(billers))
    _airflow(env, "db", "migrate")
    _airflow(env, "fab-db", "migrate")
    _airflow(env, "roles", "create", *USERS.values())
    _airflow(env, "roles", "add-perms", *USERS.values(), "-a", "can_read", "-r", "Plugins")
    for user, role in {**USERS, "vic": "Viewer", "ops": "Op"}.items():
        _airflow(env, "users", "create", "--username", user, "--password", f"pw-{user}", "--role", role,
                 "--email", f"{user}@example.test", "--firstname", user, "--lastname", "test")
    _airflow(env, "dags", "reserialize")  # the DAGs with their access_control, as the dag-processor stores them
    _airflow(env, "sync-perm", "--include-dags")
    store = ReconcileStore(state_url)
    runs = {"fab_a": seed_runs(store, "fab_a", items=20), "fab_b": seed_runs(store, "fab_b", items=20)}
    store.dispose()
    server: Airflow = start_airflow(env, airflow_home, port, command=("api-server",), log_name="api-server.log")
    session = requests.Session()
    session.trust_env = False
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if session.get(f"{server.url}/api/v2/version", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"api-server not up: {server.log_tail()}")
            time.sleep(0.5)

        def token(user: str) -> str:
            answer = session.post(f"{server.url}/auth/token", json={"username": user, "password": f"pw-{user}"})
            assert answer.status_code in (200, 201), answer.text
            return answer.json()["access_token"]

        yield server, session, token, runs
    finally:
        server.stop(grace=20)


def _pages(runs: dict[str, int], biller: str) -> list[str]:
    run = runs[biller]
    return [f"/icbridge/balance-all/runs/{run}", f"/icbridge/balance-all/runs/{run}/items.csv",
            f"/icbridge/balance-all/runs/{run}/items.xlsx", f"/icbridge/balance-all/?biller={biller}",
            f"/icbridge/health/{biller}/doubts", f"/icbridge/billers/{biller}/check"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_each_user_reads_only_the_billers_fab_gives_them(fab):
    server, session, token, runs = fab
    seen: dict[tuple[str, str], int] = {}
    for user, own in (("ana", "fab_a"), ("bob", "fab_b")):
        headers = {"Authorization": f"Bearer {token(user)}"}
        other = "fab_b" if own == "fab_a" else "fab_a"
        for biller in (own, other):
            for path in _pages(runs, biller):
                got = session.get(server.url + path, headers=headers)
                seen[(user, path)] = got.status_code
                if biller == other:
                    assert got.status_code == 403, (user, path, got.status_code)
                    assert "10004" not in got.text  # no account number of the other biller's customers
                elif path.endswith("/check"):
                    assert got.status_code == 403  # reading a biller is not using its connections
                else:
                    assert got.status_code == 200, (user, path, got.status_code, got.text[:300])
        for listing in ("/icbridge/balance-all/", "/icbridge/health/", "/icbridge/billers/"):
            page = session.get(server.url + listing, headers=headers)
            assert page.status_code == 200 and own in page.text and other not in page.text, (user, listing)
    viewer = {"Authorization": f"Bearer {token('vic')}"}  # FAB's Viewer has no "can read on Plugins"
    assert session.get(server.url + "/icbridge/balance-all/", headers=viewer).status_code == 403
    print("\nuser  path  status")
    for (user, path), code in sorted(seen.items()):
        print(f"{user}  {path}  {code}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_biller_check_under_fab_needs_the_right_to_read_connections(fab):
    server, session, token, runs = fab
    ops = {"Authorization": f"Bearer {token('ops')}", "Accept": "text/html"}  # Op: every DAG, connections
    page = session.get(f"{server.url}/icbridge/billers/fab_a/check", headers=ops)
    assert page.status_code == 200 and 'name="token"' in page.text, page.text[:300]
    ana = {"Authorization": f"Bearer {token('ana')}"}
    assert session.post(f"{server.url}/icbridge/billers/fab_a/check", headers=ana,
                        data={"token": "1.x"}).status_code == 403
