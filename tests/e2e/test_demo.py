"""The README's demo, end to end: `python -m icbridge.demo --exit` in a subprocess.

Simulators, `airflow standalone`, one generated AUS file through `demo_aus__invoices` and
the REST API, then the inHance demo biller's Balance All, about a minute. Afterwards no
process of Airflow's session may be left.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icbsim.local_airflow import session_members

DEMO_TIMEOUT = 300


def _kill_session(sid: int) -> None:
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(DEMO_TIMEOUT + 120)
def test_demo_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path, repo_root: Path) -> None:
    home = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "icbridge.demo", "--exit", "--home", str(home), "--timeout", str(DEMO_TIMEOUT - 60)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a hung demo can be killed with all it started
    )
    output = ""
    try:
        output, _ = process.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"demo did not finish in {DEMO_TIMEOUT} s:\n{output}")
    finally:
        match = re.search(r"airflow standalone started: pid (\d+)", output)
        airflow_sid = int(match.group(1)) if match else None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        leftovers = []
        for sid in filter(None, (airflow_sid, process.pid)):
            deadline = time.monotonic() + 10  # zombies being reaped by init are not "running"
            while session_members(sid) and time.monotonic() < deadline:
                time.sleep(0.2)
            leftovers += session_members(sid)
            _kill_session(sid)

    log = home / "airflow" / "standalone.log"
    assert process.returncode == 0, f"{output}\n--- {log} (tail) ---\n" + (
        "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else "(none)"
    )
    assert airflow_sid is not None, output
    assert leftovers == [], f"processes left running: {leftovers}"

    assert "Run demo__" in output and ": success" in output
    assert re.search(r"Airflow UI: http://127\.0\.0\.1:\d+/", output), output
    password_file = home / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert re.search(rf"Login: user admin, password \S+ \(stored in {re.escape(str(password_file))}\)", output)
    assert re.search(r"123_\d{14}_UB\.BIF \(\d+ bytes, 200 invoices\): accepted", output), output
    assert (password_file.stat().st_mode & 0o777) == 0o600
    assert re.search(r"Run \S+ of demo_inhance__balance_all: success", output), output
    assert re.search(r"Balance All report: http://127\.0\.0\.1:\d+/icbridge/balance-all/", output), output
    # something to look at on every page the demo names (issue 15)
    assert "the AUS CIS knows its 200 accounts" in output, output
    assert re.search(r"demo_logis\w* \{'cloudpay_payments': [1-9]\d*\}", output), output
    from icbridge.state.reconcile import ReconcileStore

    store = ReconcileStore(f"sqlite:///{home / 'state.db'}")
    try:
        latest = store.history("demo_inhance")[-1]
        assert latest.dry_run and latest.counts["balance_mismatch"] > 0, latest
    finally:
        store.dispose()
