"""A local ``airflow standalone`` for the demo, the end-to-end tests and the benchmarks.

Its environment (this repository's dags/ and plugins/, SQLite metadata DB, the simulators'
connections), its process session (started with setsid, stopped whole), and the few REST calls
that drive it (health, login, unpause, trigger, wait for a run). A development tool, like the
rest of :mod:`icbsim`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from icbsim.stack import SimStack

ADMIN = "admin"
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
STOP_GRACE = 30.0
TERMINAL_RUN_STATES = {"success", "failed"}
REPO = Path(__file__).resolve().parents[2]  # include/icbsim/local_airflow.py -> the repository

# Inherited settings that would point the demo's Airflow at another installation.
_DROPPED_PREFIXES = ("AIRFLOW_", "ICBRIDGE_STATE_DB_URL", "ICBRIDGE_ARTIFACTS_DIR", "ICBRIDGE_HOME")


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where to look."""


def say(message: str = "") -> None:
    print(message, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# processes ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, session) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3])


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: the standalone and all it started.

    Task runners put themselves in process groups of their own (Airflow's supervisor), but
    stay in the session, so the session is what must end empty.
    """
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the process group is the best we can see
        try:
            os.killpg(sid, 0)
        except ProcessLookupError:
            return []
        return [sid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        info = _proc_stat(int(entry.name))
        if info is not None and info[2] == sid and info[0] != "Z":
            members.append(int(entry.name))
    return members


def _signal_session(sid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, sig)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass
class Airflow:
    """A running ``airflow standalone`` (session leader) and how to reach its API."""

    process: subprocess.Popen[bytes]
    home: Path
    url: str
    log_path: Path

    @property
    def sid(self) -> int:
        return self.process.pid

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the whole session, SIGKILL whatever is left after ``grace`` seconds."""
        if self.process.poll() is None or session_members(self.sid):
            _signal_session(self.sid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()
                if self.process.returncode is not None and not session_members(self.sid):
                    break
                time.sleep(0.2)
            else:
                say(f"Airflow did not stop within {grace:.0f} s: killing its processes")
                _signal_session(self.sid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def airflow_env(
    home: Path, airflow_home: Path, port: int, stack: SimStack, state_db_url: str | None
) -> tuple[dict[str, str], list[str]]:
    """The environment of ``airflow standalone``; also returns the inherited names it dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    dropped = sorted(k for k in os.environ if k.startswith(_DROPPED_PREFIXES))
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # standalone runs `airflow ...`
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            # Also where task processes find the Execution API (default http://localhost:8080).
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            # The scheduler's and triggerer's log servers (Airflow binds them on every interface,
            # with no host setting): free ports, so two demos or a local Airflow do not collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "ICBRIDGE_STATE_DB_URL": state_db_url or f"sqlite:///{home / 'state.db'}",
            "ICBRIDGE_ARTIFACTS_DIR": str(home / "artifacts"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(stack.env())
    return env, dropped


def start_airflow(
    env: dict[str, str],
    airflow_home: Path,
    port: int,
    command: Sequence[str] = ("standalone",),
    log_name: str = "standalone.log",
) -> Airflow:
    """``airflow standalone`` (or another ``airflow`` sub-command) in a session of its own."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    log_path = airflow_home / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *command],
            cwd=airflow_home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: its own session and process group
        )
    return Airflow(process, airflow_home, f"http://127.0.0.1:{port}", log_path)


# REST API -------------------------------------------------------------------------------------


class Api:
    """The few Airflow REST calls the demo makes (a session that ignores proxy/CA env vars)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=10, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def login(self, username: str, password: str) -> None:
        token = self.call("POST", "/auth/token", json={"username": username, "password": password})
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def wait_healthy(api: Api, airflow: Airflow, deadline: float) -> None:
    wanted = ("metadatabase", "scheduler", "dag_processor")
    last = "no answer yet"
    while True:
        if airflow.process.poll() is not None:
            raise DemoError(f"airflow standalone exited with {airflow.process.returncode}:\n{airflow.log_tail()}")
        try:
            response = api.get("/api/v2/monitor/health")
            if response.ok:
                health = response.json()
                states = {name: (health.get(name) or {}).get("status") for name in wanted}
                last = ", ".join(f"{k} {v}" for k, v in states.items())
                if all(state == "healthy" for state in states.values()):
                    return
        except requests.RequestException as exc:
            last = type(exc).__name__
        try:
            time.sleep(min(1.0, _remaining(deadline)))
        except TimeoutError:
            raise DemoError(f"Airflow not healthy in time ({last}); see {airflow.log_path}") from None


def read_admin_password(airflow_home: Path, deadline: float) -> str:
    path = airflow_home / PASSWORD_FILE
    while True:
        try:
            password = str(json.loads(path.read_text())[ADMIN])
        except (OSError, ValueError, KeyError):
            pass
        else:
            path.chmod(0o600)  # Airflow writes it with the umask's mode
            return password
        try:
            time.sleep(min(0.5, _remaining(deadline)))
        except TimeoutError:
            raise DemoError(f"no admin password in {path}") from None


def wait_for_dag(api: Api, dag_id: str, airflow: Airflow, deadline: float) -> None:
    """The DAG is in the API once the dag-processor parsed dags/ (a few seconds after start)."""
    while True:
        response = api.get(f"/api/v2/dags/{dag_id}")
        if response.status_code == 200:
            return
        try:
            time.sleep(min(1.0, _remaining(deadline)))
        except TimeoutError:
            errors = api.get("/api/v2/importErrors").text[:2000]
            raise DemoError(
                f"DAG {dag_id} did not appear (are dags/billers_NN.py there?); import errors: {errors}; "
                f"see {airflow.log_path}"
            ) from None


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def unpause(api: Api, dag_id: str, deadline: float) -> None:
    """Unpause, and let the scheduled runs that are due (or running) finish first.

    With ``catchup=False`` the scheduler starts one run for the latest interval as soon as
    the DAG is unpaused (or, in a reused home, as soon as it starts). Left alone it would
    race the demo's run for the file, and usually win, as its logical date is earlier; so
    the file is dropped only once no scheduled run is due or running.
    """
    dag = api.call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    due_at = _when(dag.get("next_dagrun_run_after"))
    expected = _when(dag.get("next_dagrun_logical_date")) if due_at and due_at <= datetime.now(UTC) else None
    if expected is not None:
        say(f"unpaused {dag_id}; its scheduled run for {expected.isoformat()} goes first")
    while True:
        runs = api.call(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"run_type": "scheduled", "order_by": "-id", "limit": 20}
        )["dag_runs"]
        running = [run for run in runs if run["state"] not in TERMINAL_RUN_STATES]
        created = expected is None or any((_when(run.get("logical_date")) or expected) >= expected for run in runs)
        if created and not running:
            return
        try:
            time.sleep(min(1.0, _remaining(deadline)))
        except TimeoutError:
            raise DemoError(f"the scheduled run of {dag_id} did not finish in time") from None


def trigger(api: Api, dag_id: str, conf: dict | None = None) -> str:
    now = datetime.now(UTC)
    run_id = f"demo__{now:%Y%m%dT%H%M%S}"
    body = {"dag_run_id": run_id, "logical_date": now.isoformat(), "conf": conf or {}}
    return str(api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])


def wait_for_run(api: Api, dag_id: str, run_id: str, deadline: float) -> str:
    state = "unknown"
    while True:
        state = str(api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
        if state in TERMINAL_RUN_STATES:
            return state
        try:
            time.sleep(min(2.0, _remaining(deadline)))
        except TimeoutError:
            return f"{state} (timed out)"


def task_summary(api: Api, dag_id: str, run_id: str) -> list[str]:
    try:
        tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    except DemoError as exc:
        return [str(exc)]
    lines = []
    for ti in tis:
        index = ti.get("rendered_map_index") or (ti["map_index"] if ti.get("map_index", -1) >= 0 else "")
        label = f"{ti['task_id']}[{index}]" if index != "" else ti["task_id"]
        lines.append(f"  {label}: {ti.get('state')}")
    return lines
