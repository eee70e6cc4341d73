"""Alert incidents (state/alerts.py): one per condition until it clears; evaluating again sends
nothing new; a condition that cleared before its alert went out needs no recovery message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from icbridge.state.alerts import open_and_close, pending, sent
from icbridge.state.db import make_engine
from icbridge.state.health import HealthRow

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
LATE = HealthRow("b1", "invoices", "late", None, None, None, None, 0, 0, None, NOW - timedelta(hours=6), None)
OK = replace(LATE, status="ok", due=None)


def test_an_incident_is_noticed_once_and_recovers_once(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    open_and_close(engine, [LATE], NOW)
    [notice] = pending(engine)
    assert (notice.kind, notice.recovered) == ("late", False) and "deadline" in notice.detail
    sent(engine, notice)
    open_and_close(engine, [LATE], NOW + timedelta(minutes=15))  # still late: nothing new
    assert pending(engine) == []
    open_and_close(engine, [OK], NOW + timedelta(minutes=30))
    [recovery] = pending(engine)
    assert recovery.recovered and recovery.incident_id == notice.incident_id
    sent(engine, recovery)
    assert pending(engine) == []
    open_and_close(engine, [LATE], NOW + timedelta(days=1))  # late again: a new incident
    [again] = pending(engine)
    assert again.incident_id != notice.incident_id
    engine.dispose()


def test_a_condition_gone_before_its_alert_went_out_sends_nothing(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    open_and_close(engine, [replace(OK, in_doubt=2)], NOW)
    assert [n.kind for n in pending(engine)] == ["in_doubt"]
    open_and_close(engine, [OK], NOW + timedelta(minutes=15))  # settled before any alert went out
    assert pending(engine) == []
    engine.dispose()


def test_a_balance_all_over_its_threshold_or_a_failed_upload_is_a_failed_incident(tmp_path):
    """Invoices and Balance All have no watermark of their own: their operators record each run's
    outcome (operators.common.recorded_outcome), so a failed one is ``failed`` until a success."""
    from pathlib import Path

    from icbridge.config.biller import load_biller
    from icbridge.state.alerts import incident_kinds
    from icbridge.state.health import health_rows
    from icbridge.state.watermarks import Watermarks

    url = f"sqlite:///{tmp_path / 'state.db'}"
    biller = load_biller(Path(__file__).resolve().parents[3] / "include" / "billers" / "demo_aus.yaml")
    marks = Watermarks(url)
    marks.record_run("demo_aus", "balance_all", run_id="scheduled__1", ok=False,
                     message="ThresholdExceeded: 40 of 100 accounts (40.0 %) could not be checked")
    marks.record_run("demo_aus", "invoices", run_id="r2", ok=False, message="UploadRefused: IC refused part 1")
    engine = make_engine(url)
    rows = {r.flow: r for r in health_rows(engine, [biller], NOW)}
    assert rows["balance_all"].status == "failed"
    assert "ThresholdExceeded" in incident_kinds(rows["balance_all"])["failed"]
    assert rows["invoices"].status == "late"  # no file either: late is what is shown (and alerted) first
    marks.record_run("demo_aus", "balance_all", run_id="scheduled__2", ok=True, message=None)
    rows = {r.flow: r for r in health_rows(engine, [biller], NOW)}
    assert "failed" not in incident_kinds(rows["balance_all"])
    marks.dispose()
    engine.dispose()
