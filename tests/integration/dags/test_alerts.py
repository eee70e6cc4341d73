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


def _fail(ledger, marks, payments):
    marks.record_run("t_late", "payments", run_id="r1", ok=False,
                     message="CisRefused: the CIS refused the post for pat.doe@example.com")
    return lambda: marks.record_run("t_late", "payments", run_id="r2", ok=True, message=None)


def _in_doubt(ledger, marks, payments):
    from decimal import Decimal

    assert payments.claim("t_late", "G-1", account_number="1001", cis_account="1001", invoice_number=None,
                          amount=Decimal("25.00"), convenience_fee=Decimal("0.00"), payment_type="CC",
                          payment_date=None, cis="aus", run_id="r1")
    payments.finish("t_late", "G-1", "in_doubt", message="sent, no answer", run_id="r1")
    return lambda: payments.settle("t_late", "G-1", "posted", note="seen in AUS", by="ops")


def _rejected(ledger, marks, payments):
    file = ledger.begin_file("t_late", "123_20261206_UB.TXT", "1" * 64, 10, "r1", False)
    ledger.finish_file(file, "rejected", reason="12 of 100 bills rejected (12.0 %) over the 5 % threshold")
    return None  # clears after 7 days


def _behind(ledger, marks, payments):
    from datetime import timedelta

    marks.advance("t_late", "balances", datetime.now(UTC) - timedelta(days=2), run_id="r1")
    return lambda: marks.advance("t_late", "balances", datetime.now(UTC), run_id="r2")


@pytest.mark.parametrize(("kind", "flow", "make"), [
    ("failed", "payments", _fail), ("in_doubt", "payments", _in_doubt),
    ("rejected", "invoices", _rejected), ("behind", "balances", _behind)])
def test_each_alert_kind_reaches_the_smtp_server_once_masked_and_recovers(dag_env, late_biller, smtp_server,
                                                                           kind, flow, make):
    """Every kind but ``late`` (above): one message per incident through the real SMTP server,
    nothing more on the next evaluation, emails masked, the step to take, one recovery."""
    from icbridge.state.payments import PaymentLedger
    from icbridge.state.watermarks import Watermarks

    ledger, marks, payments = Ledger(dag_env.state_url), Watermarks(dag_env.state_url), PaymentLedger(dag_env.state_url)
    ledger.begin_file(late_biller, "123_20261207_UB.TXT", "0" * 64, 10, "r0", False)  # today's file: not late
    clear = make(ledger, marks, payments)
    dag = build(billers_dir=str(dag_env.billers))
    assert str(dag.test().state) == "success"
    [(subject, body)] = _mails(smtp_server)
    assert subject.startswith(f"[icbridge] {kind.upper()} t_late {flow}: "), subject
    assert "pat.doe@" not in subject + body and f"/dags/t_late__{flow}" in body
    from icbridge.operators.alerts import STEPS

    assert STEPS[kind].split(";")[0][:40] in body.replace("&#x27;", "'")
    assert str(dag.test().state) == "success"
    assert len(smtp_server.received) == 1
    if clear is not None:
        clear()
        assert str(dag.test().state) == "success"
        assert [s for s, _ in _mails(smtp_server)][1] == f"[icbridge] RECOVERED t_late {flow}: {kind} cleared"
    for store in (ledger, marks, payments):
        store.dispose()



def test_an_alert_the_smtp_server_refused_goes_out_once_on_airflows_retry(dag_env, late_biller, smtp_server):
    """The SMTP server refuses the message (451) on every send of the first try (the hook's own
    five resends included): the alerts task's first try fails and the incident stays unsent;
    Airflow's retry (the DAG's own retries, delay shortened here) sends it once; a later run adds
    nothing."""
    from datetime import timedelta

    for _ in range(6):  # SmtpHook sends once and resends up to retry_limit (5) times
        smtp_server.refuse_next()
    dag = build(billers_dir=str(dag_env.billers))
    dag.get_task("alerts").retry_delay = timedelta(seconds=1)
    run = dag.test()
    assert str(run.state) == "success"
    [ti] = run.get_task_instances()
    assert ti.try_number == 2  # the first try failed on the refusal
    [(subject, _)] = _mails(smtp_server)
    assert subject.startswith("[icbridge] LATE t_late invoices")
    assert str(dag.test().state) == "success"
    assert len(smtp_server.received) == 1
