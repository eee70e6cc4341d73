"""``python -m icbridge.demo``: the whole pipeline on one machine, against the simulators.

    python -m icbridge.demo [--home .demo] [--exit] [--state-db-url URL] [--timeout 300]

1. starts the simulators (:class:`~icbsim.stack.SimStack`: Invoice Cloud, FTPS, SFTP)
   in ``HOME/sim``, with a generated GUID, key and password per biller;
2. starts ``airflow standalone`` in its own session (``AIRFLOW_HOME=HOME/airflow``, SQLite
   metadata DB, this repository's dags/ and plugins/, API server on a free 127.0.0.1 port,
   the connections as ``AIRFLOW_CONN_*`` variables) and waits until it is healthy;
3. drops a generated AUS file (200 bills, BID 123) into demo_aus's FTPS inbox, unpauses
   ``demo_aus__invoices`` and triggers it through the REST API;
4. waits for the run and prints its state, what the IC simulator received, the UI address
   and the login;
5. seeds the CIS simulators and IC with the demo accounts (``sim.demo_data.seed_demo``),
   runs ``demo_inhance__balance_all`` (the weekly reconciliation) and prints the address of
   its report page (Browse › Balance All in the UI).

Without ``--exit`` everything stays up until Ctrl-C; with ``--exit`` it stops at once and
exits 0 when the run succeeded, 1 otherwise. Airflow's output is in ``HOME/airflow/standalone.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from icbsim.aus_files import make_rows, write_file
from icbsim.demo_data import seed_bills_in_cis, seed_demo
from icbsim.stack import SimStack

DEMO_BILLER = "demo_aus"
DEMO_DAG = f"{DEMO_BILLER}__invoices"
DEMO_BILLS = 200
RECONCILE_DAG = "demo_inhance__balance_all"
ADMIN = "admin"
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
STOP_GRACE = 30.0
TERMINAL_RUN_STATES = {"success", "failed"}
REPO = Path(__file__).resolve().parents[2]  # include/icbridge/demo.py -> the repository

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


# the demo -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m icbridge.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".demo"), help="demo folder (default: .demo)")
    parser.add_argument("--exit", action="store_true", help="stop after the run; exit 0 if it succeeded")
    parser.add_argument("--state-db-url", help="icbridge state DB (SQLAlchemy URL; default sqlite:///HOME/state.db)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds for Airflow to start and the run to finish (default 300)"
    )
    return parser.parse_args(argv)


def print_received(stack: SimStack) -> None:
    access = stack.access(DEMO_BILLER)
    uploads = stack.ic.uploads(access.biller_guid)
    say(f"Invoice Cloud simulator received {len(uploads)} file(s) for BID {access.biller.bid}:")
    for upload in uploads:
        verdict = f"accepted, FileID {upload['file_id']}" if upload["success"] else f"refused: {upload['message']}"
        say(f"  {upload['file_name']} ({upload['size']} bytes, {upload['invoices']} invoices): {verdict}")
    say(f"  invoices now on file at IC: {len(stack.ic.invoices(access.biller_guid))}")


def run_reconciliation(api: Api, stack: SimStack, deadline: float) -> bool:
    """Run the inHance biller's Balance All as a dry run on the seeded demo accounts, print its outcome.

    Unpausing first lets the weekly schedule's due run go by (it would correct every mismatch
    before the demo's run could show one); the accounts are seeded after it, and the demo's run
    is a dry run (``dry_run: true``): its report keeps the mismatches to look at."""
    unpause(api, RECONCILE_DAG, deadline)
    counts = seed_demo(stack)
    say(f"seeded demo accounts: {', '.join(f'{b} {c}' for b, c in counts.items())}")
    run_id = trigger(api, RECONCILE_DAG, conf={"dry_run": True})
    say(f"triggered {RECONCILE_DAG} run {run_id}; waiting for it")
    state = wait_for_run(api, RECONCILE_DAG, run_id, deadline)
    say(f"Run {run_id} of {RECONCILE_DAG}: {state}")
    for line in task_summary(api, RECONCILE_DAG, run_id):
        say(line)
    return state == "success"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    home = args.home.resolve()
    if not home.exists():  # secrets (connections, admin password) live below: private by default
        home.mkdir(parents=True)
        home.chmod(0o700)
    airflow_home = home / "airflow"
    stack = SimStack(home / "sim").start()
    airflow: Airflow | None = None
    try:
        for name, address in stack.addresses().items():
            say(f"simulator {name:14} {address}")
        port = free_port()
        env, dropped = airflow_env(home, airflow_home, port, stack, args.state_db_url)
        if dropped:
            say(f"(ignoring inherited {', '.join(dropped)})")
        airflow = start_airflow(env, airflow_home, port)
        say(f"airflow standalone started: pid {airflow.sid} (own session/process group); log {airflow.log_path}")
        deadline = time.monotonic() + args.timeout
        api = Api(airflow.url)
        wait_healthy(api, airflow, deadline)
        say(f"Airflow healthy after {time.monotonic() - started:.0f} s")
        password = read_admin_password(airflow_home, deadline)
        api.login(ADMIN, password)
        wait_for_dag(api, DEMO_DAG, airflow, deadline)
        unpause(api, DEMO_DAG, deadline)

        with tempfile.TemporaryDirectory() as tmp:
            bid = stack.access(DEMO_BILLER).biller.bid
            name = f"{bid}_{datetime.now():%Y%m%d%H%M%S}_UB.TXT"
            seed = time.time_ns() % 1_000_000
            source = write_file(Path(tmp) / name, DEMO_BILLS, bid=bid, seed=seed)
            dropped_at = stack.drop_file(DEMO_BILLER, source)
        known = seed_bills_in_cis(stack, DEMO_BILLER, make_rows(DEMO_BILLS, bid=bid, seed=seed))
        say(f"dropped {name} ({DEMO_BILLS} bills) into {dropped_at.parent}; the AUS CIS knows its {known} accounts")

        run_id = trigger(api, DEMO_DAG)
        say(f"triggered {DEMO_DAG} run {run_id}; waiting for it")
        state = wait_for_run(api, DEMO_DAG, run_id, deadline)
        say()
        say(f"Run {run_id} of {DEMO_DAG}: {state}")
        for line in task_summary(api, DEMO_DAG, run_id):
            say(line)
        print_received(stack)
        say()
        say(f"Airflow UI: {airflow.url}/dags/{DEMO_DAG}")
        say(f"Login: user {ADMIN}, password {password} (stored in {airflow_home / PASSWORD_FILE})")
        say(f"Artifacts (summary.json, rejects.csv): {home / 'artifacts'}")
        state_url = env["ICBRIDGE_STATE_DB_URL"]
        say(f"State DB (ledgers): {state_url}; from a shell: ICBRIDGE_STATE_DB_URL={state_url} "
            f".venv/bin/python -m icbridge ledger show --biller {DEMO_BILLER}")
        ok = state == "success"
        ok = run_reconciliation(api, stack, deadline) and ok
        say(f"Balance All report: {airflow.url}/icbridge/balance-all/ (Browse › Balance All)")
        say(f"Demo took {time.monotonic() - started:.0f} s")
        if not args.exit:
            say("Everything stays up: press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                say("stopping")
        return 0 if ok else 1
    finally:
        # A second Ctrl-C must not cut the clean-up short (Airflow's session would survive).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if airflow is not None:
            airflow.stop()
        stack.stop()
        say("Airflow and the simulators are stopped.")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: Airflow and the simulators too
    try:
        return run_demo(args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except DemoError as exc:
        say(f"demo failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
