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
