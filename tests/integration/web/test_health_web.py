"""The Integration health page as the api-server serves it (Airflow's app with our plugin, as in
test_balance_all_web.py): behind the Airflow login, one row per biller and flow from the state
DB and the biller files, worst first, sortable; unknown values shown as unknown, never zero."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from icbridge.state.db import Ledger
from icbridge.state.deliveries import DeliveryLog
from icbridge.state.health import health_rows
from icbridge.state.payments import PaymentLedger
from icbridge.state.watermarks import Watermarks
from tests.support.web import HTML, bearer, token

pytestmark = pytest.mark.usefixtures("airflow_db")
NOW = datetime.now(UTC)


def _write(folder, biller_id: str, cis: str, **sections) -> None:
    config = {"biller_id": biller_id, "bid": "77", "name": biller_id, "cis": cis, "ic_conn_id": "ic", **sections}
    (folder / f"{biller_id}.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    """Three billers: an inHance one behind on payments with a payment in doubt, an AUS one
    all caught up with a rejected file, a Logis one whose export never ran."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    billers = tmp_path / "billers"
    billers.mkdir()
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", url)
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    _write(billers, "hb_inhance", "inhance", cis_service={"conn_id": "c"}, sync={"max_lag_minutes": 60})
    _write(billers, "hb_aus", "aus", cis_service={"conn_id": "c"}, sync={"flows": ["payments"]},
           invoices={"transfer": {"conn_id": "f"}, "invoice_format_guid": "1918BF19-973B-4930-800E-2005C652C62A",
                     "invoice_type_id": "1"})
    _write(billers, "hb_logis", "logis", payment_export={"delivery": "sftp", "conn_id": "s"})
    marks = Watermarks(url)
    marks.advance("hb_inhance", "payments", NOW - timedelta(hours=5))
    marks.record_run("hb_inhance", "payments", run_id="r1", ok=False, message="payments of hb_inhance is 5 h behind")
    marks.advance("hb_inhance", "balances", NOW - timedelta(minutes=20))
    marks.record_run("hb_inhance", "balances", run_id="r2", ok=True, message=None)
    marks.advance("hb_aus", "payments", NOW - timedelta(minutes=10))
    marks.record_run("hb_aus", "payments", run_id="r3", ok=True, message=None)
    marks.dispose()
    ledger = PaymentLedger(url)
    ledger.claim("hb_inhance", "G-1", account_number="123456789", cis_account="123456789", invoice_number="1",
                 amount=Decimal("5.00"), convenience_fee=Decimal(0), payment_type="ACH", payment_date=NOW,
                 cis="inhance", run_id="r1")
    ledger.finish("hb_inhance", "G-1", "in_doubt", message="timeout")
    ledger.dispose()
    uploads = Ledger(url)
    rejected = uploads.begin_file("hb_aus", "77_20261101_UB.TXT", "ab" * 32, 10, "r4", force=False)
    uploads.finish_file(rejected, "rejected", reason="bad trailer")
    uploads.dispose()
    DeliveryLog(url).dispose()
    return url


def _rows(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="health-row" data-biller="([^"]+)" data-flow="([^"]+)">', page)


def test_health_is_behind_the_login(api, seeded):  # noqa: F811
    response = api.get("/icbridge/health/")
    assert response.status_code == 401 and "hb_inhance" not in response.text
    assert api.get("/icbridge/health/", headers=HTML).status_code == 303  # a browser goes to the login
    assert api.get("/icbridge/health/", headers=bearer(token() + "x")).status_code == 401


def test_plugin_has_the_health_entry_beside_balance_all(api):  # noqa: F811
    plugins = api.get("/api/v2/plugins", headers=bearer(token("admin", "ADMIN"))).json()["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "icbridge_reports"]
    names = [(v["name"], v["url_route"], v["category"]) for v in plugin["external_views"]]
    assert ("Balance All", "balance-all", "browse") in names
    assert ("Integration health", "integration-health", "browse") in names
    assert ("Biller check", "biller-check", "admin") in names


def test_health_lists_every_biller_flow_worst_first(api, seeded):  # noqa: F811
    page = api.get("/icbridge/health/", headers=bearer())
    assert page.status_code == 200, page.text
    rows = _rows(page.text)
    assert rows[0] == ("hb_inhance", "payments")  # 5 h behind a 60 min bound, 1 payment in doubt
    assert rows[1] == ("hb_aus", "invoices")  # a file rejected this week
    assert set(rows) == {("hb_inhance", "payments"), ("hb_inhance", "balances"), ("hb_inhance", "customer_changes"),
                         ("hb_aus", "invoices"), ("hb_aus", "payments"), ("hb_logis", "payment_export")}
    first = page.text.split('data-flow="payments">', 1)[1].split("</tr>", 1)[0]
    assert ">behind<" in first and "5 h" in first and "(bound 1 h)" in first and ">1<" in first
    never = page.text.split('data-biller="hb_logis" data-flow="payment_export">', 1)[1].split("</tr>", 1)[0]
    assert ">never run<" in never and "—" in never  # no watermark: unknown, not zero


def test_health_sorts_by_a_column_and_refuses_unknown_sorts(api, seeded):  # noqa: F811
    by_lag = _rows(api.get("/icbridge/health/?sort=lag&desc=1", headers=bearer()).text)
    assert by_lag[:3] == [("hb_inhance", "payments"), ("hb_inhance", "balances"), ("hb_aus", "payments")]
    by_biller = _rows(api.get("/icbridge/health/?sort=biller", headers=bearer()).text)
    assert by_biller == sorted(by_biller)
    assert api.get("/icbridge/health/?sort=secret", headers=bearer()).status_code == 400


def test_health_rows_catch_up_when_the_watermark_moves(seeded):
    from icbridge.config.biller import default_billers_dir, load_billers
    from icbridge.state.db import make_engine

    engine = make_engine(seeded)
    billers = load_billers(default_billers_dir()).billers
    [row] = [r for r in health_rows(engine, billers, NOW) if (r.biller_id, r.flow) == ("hb_inhance", "payments")]
    assert row.status == "behind" and row.lag == timedelta(hours=5) and row.in_doubt == 1
    marks = Watermarks(engine=engine)
    marks.advance("hb_inhance", "payments", NOW - timedelta(minutes=2))
    marks.record_run("hb_inhance", "payments", run_id="r5", ok=True, message=None)
    [row] = [r for r in health_rows(engine, billers, NOW) if (r.biller_id, r.flow) == ("hb_inhance", "payments")]
    assert row.status == "attention" and row.lag == timedelta(minutes=2)  # caught up; the payment still waits
    engine.dispose()


def test_the_cli_prints_the_same_rows_and_exits_1_when_a_flow_is_behind(seeded, capsys):
    from icbridge.cli import main as cli

    assert cli(["health", "--db", seeded]) == 1  # hb_inhance payments: 5 h behind a 60 min bound
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["behind", "hb_inhance", "payments"]
    assert re.search(r"lag 5 h( \d+ min)? \(bound 1 h\)", lines[0]), lines[0]
    assert "in doubt 1" in lines[0]
    assert lines[1].strip() == "payments of hb_inhance is 5 h behind"  # the last run's message
    assert cli(["health", "--db", seeded, "--biller", "hb_aus"]) == 0  # a rejected file: attention, not behind
    out = capsys.readouterr().out
    assert "attention  hb_aus  invoices" in out and "rejected 7d 1" in out and "hb_inhance" not in out


def test_an_in_doubt_count_links_to_what_waits_and_who_settled_what(api, seeded):  # noqa: F811
    """Issue 21 item 3: the health page's in-doubt count is a link to the biller's items waiting
    for a person (accounts masked) and its settlements (who, when, from, to, why)."""
    import os

    page = api.get("/icbridge/health/", headers=bearer())
    assert 'href="hb_inhance/doubts"' in page.text
    doubts = api.get("/icbridge/health/hb_inhance/doubts", headers=bearer())
    assert doubts.status_code == 200, doubts.text
    assert "G-1" in doubts.text and "in_doubt" in doubts.text and "123456789" not in doubts.text
    ledger = PaymentLedger(os.environ["ICBRIDGE_STATE_DB_URL"])
    ledger.settle("hb_inhance", "G-1", "posted", note="CIS shows it as pending", by="ops-anna")
    ledger.dispose()
    settled = api.get("/icbridge/health/hb_inhance/doubts", headers=bearer()).text
    assert "ops-anna" in settled and "in_doubt → posted" in settled and "CIS shows it as pending" in settled
    assert "waiting for a person (0)" in settled


def test_health_counts_what_needs_attention_links_each_flow_and_gives_json(api, seeded):  # noqa: F811
    """Issue 23: the page answers "is anything wrong" at a glance (counts by status), each flow
    links to its DAG, times are the biller's with the zone named; the same rows as JSON."""
    page = api.get("/icbridge/health/", headers=bearer()).text
    assert "need attention</b>" in page and "1 behind" in page
    assert 'href="/dags/hb_inhance__payments"' in page
    assert " EST<" in page or " EDT<" in page  # America/New_York, named
    data = api.get("/icbridge/health/rows.json", headers=bearer()).json()
    rows = {(r["biller_id"], r["flow"]): r for r in data["rows"]}
    payments = rows[("hb_inhance", "payments")]
    assert payments["status"] == "behind" and payments["lag_bound_seconds"] == 3600 and payments["in_doubt"] == 1
    assert rows[("hb_logis", "payment_export")]["covered_through"] is None  # unknown, never 0
    assert data["counts"]["behind"] >= 1
    assert api.get("/icbridge/health/rows.json").status_code == 401
