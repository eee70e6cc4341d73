"""Test session set-up.

Airflow reads its configuration at import time, so AIRFLOW_HOME (a temp dir), the DAGs
folder and the metadata DB are set here before anything imports airflow. Fixtures that
start real servers live in tests/support/, registered below.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="icbridge-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("ICBRIDGE_ARTIFACTS_DIR", str(_AIRFLOW_HOME / "artifacts"))

pytest_plugins = ["tests.support.servers", "tests.support.ic_sim"]

ON_CI = bool(os.environ.get("CI"))


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a service the test needs is not reachable."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if ON_CI:
        pytest.fail(f"{message}, and CI is set: CI must run this test")
    pytest.skip(f"{message}; set up {name} or run in CI to include this test")


PG_URL = os.environ.get("ICBRIDGE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A state-DB URL on a fresh PostgreSQL schema, dropped afterwards (skips without PostgreSQL)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"icb_test_{uuid.uuid4().hex[:10]}"
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def state_store(kind: str, tmp_path: Path, factory):
    """``factory(url)`` on a fresh state DB of ``kind`` (``sqlite``: a file; ``postgres``: a new
    schema, dropped afterwards), disposed after the block."""
    if kind == "sqlite":
        store = factory(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            yield store
        finally:
            store.dispose()
        return
    with postgres_schema() as url:
        store = factory(url)
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB for this pytest session (needed by dag.test())."""
    from airflow.utils import db

    db.resetdb()
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@dataclass(frozen=True)
class DagEnv:
    """Where a DAG test's biller files, state DB and artifacts are."""

    billers: Path
    state_url: str
    artifacts: Path


@pytest.fixture
def dag_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DagEnv:
    """An empty billers folder, a SQLite state DB and an artifacts folder for this test, set where
    the operators look (env: dag.test() re-parses the dags folder, so a builder's argument is not enough)."""
    env = DagEnv(tmp_path / "billers", f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "artifacts")
    env.billers.mkdir()
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(env.billers))
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", env.state_url)
    monkeypatch.setenv("ICBRIDGE_ARTIFACTS_DIR", str(env.artifacts))
    return env
