"""Issue 23 under the real scheduler (``airflow standalone``, LocalExecutor): an AUS biller whose
export stopped is late; unpausing ``icbridge__alerts`` delivers one alert through a real SMTP
server (the smtp provider's SmtpNotifier, TLS verified); another run adds no message; once the
file is seen the next run sends one "recovered" message."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
import yaml

from icbridge.state.db import Ledger
from icbsim.local_airflow import (
    ADMIN,
    Api,
    airflow_env,
    free_port,
    read_admin_password,
    start_airflow,
    trigger,
    unpause,
    wait_for_dag,
    wait_for_run,
    wait_healthy,
)
from icbsim.smtp import SMTPServer
from icbsim.tls import make_test_pki
from tests.support.services import REPO

DAG_ID = "icbridge__alerts"


class _NoSims:
    def env(self) -> dict[str, str]:
        return {}


def _subjects(server: SMTPServer) -> list[str]:
    return [str(m.message["Subject"]) for m in server.received]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_late_export_alerts_once_and_recovers_under_the_real_scheduler(tmp_path: Path) -> None:
    billers = tmp_path / "billers"
    billers.mkdir()
    raw = yaml.safe_load((REPO / "include" / "billers" / "demo_aus.yaml").read_text())
    raw.update(biller_id="late_aus", alert_emails=["ops@example.com"])
    raw["invoices"]["expected"] = {"days": "daily", "by": "00:00", "grace_minutes": 0}
    (billers / "late_aus.yaml").write_text(yaml.safe_dump(raw))
    pki = make_test_pki(tmp_path / "pki")
    password = secrets.token_urlsafe(16)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    airflow = None
    with SMTPServer(users={"alerts": password}, pki=pki) as smtp:
        try:
            port = free_port()
            airflow_home = tmp_path / "airflow"
            env, _ = airflow_env(tmp_path, airflow_home, port, _NoSims(), state_url)  # type: ignore[arg-type]
            env.update(
                ICBRIDGE_BILLERS_DIR=str(billers),
                SSL_CERT_FILE=str(pki.ca_cert),  # the provider's SmtpHook checks the server against it
                AIRFLOW_CONN_ICB_ALERTS_SMTP=json.dumps({
                    "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port, "login": "alerts",
                    "password": password, "extra": {"disable_ssl": True, "from_email": "icbridge@example.com",
                                                    "timeout": 10}}),
            )
            airflow = start_airflow(env, airflow_home, port)
            deadline = time.monotonic() + 180
            api = Api(airflow.url)
            wait_healthy(api, airflow, deadline)
            api.login(ADMIN, read_admin_password(airflow_home, deadline))
            wait_for_dag(api, DAG_ID, airflow, deadline)
            unpause(api, DAG_ID, time.monotonic() + 180)  # the scheduler's own run, finished
            [subject] = _subjects(smtp)
            assert subject.startswith("[icbridge] LATE late_aus invoices")

            run = trigger(api, DAG_ID)  # evaluated again: the incident is open, nothing new
            assert wait_for_run(api, DAG_ID, run, time.monotonic() + 120) == "success"
            assert len(smtp.received) == 1

            Ledger(state_url).begin_file("late_aus", "123_20261207_UB.TXT", "0" * 64, 10, "r1", False)
            time.sleep(1.1)  # the next run id (trigger names it by the second)
            run = trigger(api, DAG_ID)
            assert wait_for_run(api, DAG_ID, run, time.monotonic() + 120) == "success"
            assert _subjects(smtp)[1:] == ["[icbridge] RECOVERED late_aus invoices: late cleared"]
        finally:
            if airflow is not None:
                airflow.stop()
