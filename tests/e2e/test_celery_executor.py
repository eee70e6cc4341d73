"""Airflow with the CeleryExecutor, as in production: five separate processes.

``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and ``celery worker``,
each in a session of its own, with the metadata DB, the Celery result backend and our state
DB on PostgreSQL (fresh databases, dropped afterwards) and Redis as the broker (a free
Redis DB, flushed afterwards); the simulators (:class:`~icbsim.stack.SimStack`) in
process. One triggered run, then a backfill over three past intervals, then the same
backfill again with ``reprocess_behavior=completed``: every AUS file reaches Invoice Cloud
exactly once. Afterwards no process any of the five started may be left.

The REST and process helpers are icbsim.local_airflow's.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from icbsim.aus_files import write_file
from icbsim.demo import DEMO_BILLER, DEMO_DAG
from icbsim.local_airflow import (
    ADMIN,
    TERMINAL_RUN_STATES,
    Airflow,
    Api,
    DemoError,
    airflow_env,
    free_port,
    read_admin_password,
    session_members,
    start_airflow,
    trigger,
    unpause,
    wait_for_dag,
    wait_for_run,
    wait_healthy,
)
from icbsim.stack import SimStack
from tests.support.services import require_service

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
BILLS = 50
# the first file: above the parallel threshold, so the Celery task maps it with workers the
# forkserver starts (one part still: ~10 MB of BIF), and they must be gone when Airflow stops
FIRST_BILLS = 20_000
STARTUP_TIMEOUT = 120
RUN_TIMEOUT = 90
STOP_GRACE = 20.0

# name -> airflow sub-command; each is its own session (start_new_session=True)
PROCESSES = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler",),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer",),
    "celery-worker": ("celery", "worker", "--concurrency", "4"),
}


def _pg_url(db: str, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def _admin_sql(*statements: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="test")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _free_redis_db():
    import redis

    for number in range(7, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
        if client.dbsize() == 0:
            return number, client
        client.close()
    pytest.fail("no empty Redis DB among 7..15")


def _drop(stack: SimStack, stamp: str, bills: int = BILLS) -> str:
    bid = stack.access(DEMO_BILLER).biller.bid
    name = f"{bid}_{stamp}_UB.TXT"
    with tempfile.TemporaryDirectory() as tmp:
        source = write_file(Path(tmp) / name, bills, bid=bid, seed=int(stamp[-6:]))
        stack.drop_file(DEMO_BILLER, source, name=name)
    return name


def _upload_counts(stack: SimStack, names: list[str]) -> dict[str, int]:
    """Accepted uploads per dropped file (a file of BILLS bills is one part, ``<stem>.BIF``)."""
    uploads = stack.ic.uploads(stack.access(DEMO_BILLER).biller_guid)
    counts = {name: 0 for name in names}
    for upload in uploads:
        assert upload["success"], upload["message"]
        stem = Path(upload["file_name"]).stem
        matches = [name for name in names if Path(name).stem == stem]
        assert matches, f"IC received {upload['file_name']}, which was never dropped"
        counts[matches[0]] += 1
    return counts


def _check_alive(procs: dict[str, Airflow]) -> None:
    for name, proc in procs.items():
        if proc.process.poll() is not None:
            pytest.fail(f"airflow {name} exited with {proc.process.returncode}:\n{proc.log_tail()}")


def _three_intervals(api: Api) -> tuple[datetime, datetime, list[str]]:
    """A window (a day ago and more) holding exactly three of the DAG's logical dates."""
    start = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    body = {"dag_id": DEMO_DAG, "from_date": start.isoformat(), "to_date": (start + timedelta(hours=12)).isoformat()}
    dates = sorted(r["logical_date"] for r in api.call("POST", "/api/v2/backfills/dry_run", json=body)["backfills"])
    assert len(dates) >= 3, dates
    return datetime.fromisoformat(dates[0]), datetime.fromisoformat(dates[2]), dates[:3]


def _backfill(api: Api, procs: dict[str, Airflow], window: tuple[datetime, datetime, list[str]], behavior: str) -> None:
    from_date, to_date, dates = window
    body = {
        "dag_id": DEMO_DAG,
        "from_date": from_date.isoformat(),
        "to_date": to_date.isoformat(),
        "reprocess_behavior": behavior,
        # The DAG's own max_active_runs (1): a backfill's default of 10 runs the three at once,
        # and runs racing for the same inbox files fail ("550 No such file" once one archived them).
        "max_active_runs": 1,
    }
    backfill = api.call("POST", "/api/v2/backfills", json=body)
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        _check_alive(procs)
        state = api.call("GET", f"/api/v2/backfills/{backfill['id']}")
        params = {
            "run_type": "backfill",
            "logical_date_gte": from_date.isoformat(),
            "logical_date_lte": to_date.isoformat(),
            "limit": 50,
        }
        runs = api.call("GET", f"/api/v2/dags/{DEMO_DAG}/dagRuns", params=params)["dag_runs"]
        done = [run for run in runs if run["state"] in TERMINAL_RUN_STATES]
        if state["completed_at"] and len(done) == len(runs) == 3:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"backfill {backfill['id']} ({behavior}) not done in {RUN_TIMEOUT} s: {state}; runs {runs}")
        time.sleep(1)
    assert sorted(datetime.fromisoformat(run["logical_date"]) for run in runs) == [
        datetime.fromisoformat(d) for d in dates
    ]
    assert all(run["state"] == "success" for run in runs), runs
    assert all(run.get("backfill_id", backfill["id"]) == backfill["id"] for run in runs), runs


def _stop_all(procs: dict[str, Airflow]) -> None:
    """Every session at once: SIGTERM, SIGKILL after STOP_GRACE (icbsim.local_airflow.Airflow.stop)."""
    with ThreadPoolExecutor(len(procs) or 1) as pool:
        list(pool.map(lambda proc: proc.stop(STOP_GRACE), procs.values()))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_celery_executor_end_to_end(tmp_path: Path) -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    from cryptography.fernet import Fernet

    started = time.monotonic()
    suffix = secrets.token_hex(4)
    af_db, state_db = f"icb_af_{suffix}", f"icb_state_{suffix}"
    home, airflow_home = tmp_path, tmp_path / "airflow"
    airflow_home.mkdir()
    _admin_sql(f'CREATE DATABASE "{af_db}"', f'CREATE DATABASE "{state_db}"')
    redis_db, redis_client = _free_redis_db()
    stack = SimStack(home / "sim").start()
    procs: dict[str, Airflow] = {}
    try:
        port = free_port()
        env, _ = airflow_env(home, airflow_home, port, stack, _pg_url(state_db))
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _pg_url(af_db),
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": _pg_url(af_db, "db+postgresql+psycopg2"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                # Shared by all five processes: tokens the scheduler signs, the api-server checks.
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            }
        )
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            cwd=airflow_home,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        migrated = time.monotonic()

        for name, command in PROCESSES.items():
            proc_env = env
            if name == "celery-worker":  # its log server must not collide with the scheduler's
                proc_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            procs[name] = start_airflow(proc_env, airflow_home, port, command=command, log_name=f"{name}.log")

        deadline = time.monotonic() + STARTUP_TIMEOUT
        api = Api(f"http://127.0.0.1:{port}")
        while True:  # demo's wait_healthy, in short slices: fail at once when a process dies
            _check_alive(procs)
            try:
                wait_healthy(api, procs["api-server"], min(deadline, time.monotonic() + 3))
                break
            except DemoError:
                if time.monotonic() >= deadline:
                    raise
        while (api.call("GET", "/api/v2/monitor/health").get("triggerer") or {}).get("status") != "healthy":
            assert time.monotonic() < deadline, "triggerer not healthy"
            time.sleep(1)
        _check_alive(procs)
        api.login(ADMIN, read_admin_password(airflow_home, deadline))
        wait_for_dag(api, DEMO_DAG, procs["dag-processor"], deadline)
        healthy = time.monotonic()
        unpause(api, DEMO_DAG, time.monotonic() + RUN_TIMEOUT)

        # 1. one file, one triggered run, through the Celery worker
        stamp = datetime.now()
        first = _drop(stack, f"{stamp:%Y%m%d%H%M%S}", FIRST_BILLS)
        run_id = trigger(api, DEMO_DAG)
        state = wait_for_run(api, DEMO_DAG, run_id, time.monotonic() + RUN_TIMEOUT)
        assert state == "success", f"{run_id}: {state}\n{procs['celery-worker'].log_tail()}"
        assert _upload_counts(stack, [first]) == {first: 1}
        triggered = time.monotonic()

        # 2. three more files, a backfill over three past intervals
        more = [_drop(stack, f"{stamp + timedelta(seconds=s):%Y%m%d%H%M%S}") for s in (1, 2, 3)]
        names = [first, *more]
        window = _three_intervals(api)
        _backfill(api, procs, window, "none")
        assert _upload_counts(stack, names) == dict.fromkeys(names, 1)
        backfilled = time.monotonic()

        # 3. the same window again, completed runs re-run: nothing is uploaded twice
        _backfill(api, procs, window, "completed")
        assert _upload_counts(stack, names) == dict.fromkeys(names, 1)
        assert not list(stack.inbox(DEMO_BILLER).glob("*.TXT")), "files left in the inbox"
        _check_alive(procs)
        finished = time.monotonic()
    finally:
        _stop_all(procs)
        stack.stop()
        with contextlib.suppress(Exception):
            redis_client.flushdb()
            redis_client.close()
        _admin_sql(*(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in (af_db, state_db)))

    leftovers = {}
    for name, proc in procs.items():
        end = time.monotonic() + 10  # zombies being reaped by init are not "running"
        while session_members(proc.sid) and time.monotonic() < end:
            time.sleep(0.2)
        if session_members(proc.sid):
            leftovers[name] = session_members(proc.sid)
    assert not leftovers, f"processes left running: {leftovers}"
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="test")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname IN (%s, %s)", (af_db, state_db))
            assert cur.fetchall() == []
    finally:
        conn.close()
    total = time.monotonic() - started
    print(
        f"\ncelery e2e: migrate {migrated - started:.0f} s, healthy +{healthy - migrated:.0f} s, "
        f"triggered run +{triggered - healthy:.0f} s, backfill +{backfilled - triggered:.0f} s, "
        f"re-backfill +{finished - backfilled:.0f} s, stop +{time.monotonic() - finished:.0f} s; total {total:.0f} s"
    )
