"""Issue 23: a biller whose AUS export stops is late within its grace period, and one alert
reaches a real SMTP server through the smtp provider's notifier (the icbridge__alerts DAG run
by Airflow's dag.test); a second evaluation adds no message; the file's arrival sends one
"recovered" message."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from icbridge.config.biller import load_biller
from icbridge.dagbuild.alerts import build
from icbridge.state.db import Ledger, make_engine
from icbridge.state.health import health_rows
from icbsim.smtp import SMTPServer

pytestmark = pytest.mark.usefixtures("airflow_db")
DEMO = Path(__file__).resolve().parents[3] / "include" / "billers" / "demo_aus.yaml"


@pytest.fixture
def smtp_server(pki):
    user, password = "alerts", secrets.token_urlsafe(16)
    with SMTPServer(users={user: password}, pki=pki) as server:
        server.login = (user, password)
        yield server


@pytest.fixture
def late_biller(dag_env, set_airflow_conn, smtp_server, pki, monkeypatch) -> str:
    raw = yaml.safe_load(DEMO.read_text())
    raw.update(biller_id="t_late", alert_emails=["ops@example.com"])
    raw["invoices"]["expected"] = {"days": "daily", "by": "00:00", "grace_minutes": 0}  # today's file was due
    (dag_env.billers / "t_late.yaml").write_text(yaml.safe_dump(raw))
    user, password = smtp_server.login
    # the provider's SmtpHook verifies the server against the default trust store: the test CA is it here
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    set_airflow_conn("icb_alerts_smtp", conn_type="smtp", host="127.0.0.1", port=smtp_server.port, login=user,
                     password=password, extra={"disable_ssl": True, "from_email": "icbridge@example.com",
                                               "ca_file": str(pki.ca_cert), "timeout": 10})
    return "t_late"


def _mails(server: SMTPServer) -> list[tuple[str, str]]:
    return [(m.message["Subject"], m.message.get_body(("html",)).get_content()) for m in server.received]


def test_a_stopped_export_is_late_and_alerted_once_then_recovered(dag_env, late_biller, smtp_server):
    biller = load_biller(dag_env.billers / f"{late_biller}.yaml")
    engine = make_engine(dag_env.state_url)
    [row] = [r for r in health_rows(engine, [biller], datetime.now(UTC)) if r.flow == "invoices"]
    assert row.status == "late" and row.due is not None and row.last_received is None

    dag = build(billers_dir=str(dag_env.billers))
    assert str(dag.test().state) == "success"
    [(subject, body)] = _mails(smtp_server)
    assert subject.startswith("[icbridge] LATE t_late invoices: no file since the deadline")
    assert "/dags/t_late__invoices" in body and "AUS wrote the IC Daily Export" in body  # the link, the step

    assert str(dag.test().state) == "success"  # evaluated again (a retry, the next run): no new message
    assert len(smtp_server.received) == 1

    Ledger(dag_env.state_url).begin_file(late_biller, "123_20261207_UB.TXT", "0" * 64, 10, "r1", False)
    assert str(dag.test().state) == "success"
    subjects = [s for s, _ in _mails(smtp_server)]
    assert len(subjects) == 2 and subjects[1] == "[icbridge] RECOVERED t_late invoices: late cleared"
    assert str(dag.test().state) == "success"
    assert len(smtp_server.received) == 2
    engine.dispose()
