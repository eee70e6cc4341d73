"""Test session set-up.

Airflow reads its configuration at import time, so AIRFLOW_HOME (a temp dir), the DAGs
folder and the metadata DB are set here before anything imports airflow. Fixtures that
start real servers live in tests/support/, registered below.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import REPO

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="icbridge-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("ICBRIDGE_ARTIFACTS_DIR", str(_AIRFLOW_HOME / "artifacts"))

pytest_plugins = ["tests.support.servers", "tests.support.ic_sim"]


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
