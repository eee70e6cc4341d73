"""Executions and their leases (icbridge.state.executions) on a real SQLite file and on
PostgreSQL, and what the payment ledger makes of a row another execution left `sending`
(issue 22, item 1: the token names the execution, not the try)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from icbridge.state.executions import Execution, owner, run_of
from icbridge.state.payments import PaymentLedger
from tests.support.services import state_store


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    with state_store(request.param, tmp_path, PaymentLedger) as store:
        yield store


def _claim(ledger: PaymentLedger, guid: str, token: str) -> bool:
    return ledger.claim("b1", guid, account_number="1001", cis_account="1001", invoice_number="7001",
                        amount=Decimal("25.00"), convenience_fee=Decimal("0.00"), payment_type="Credit Card",
                        payment_date=datetime(2026, 4, 1, tzinfo=UTC), cis="inhance", run_id=token)


def _execution(ledger: PaymentLedger, run_id: str = "scheduled__2026-04-01", try_number: int = 1, **kw) -> Execution:
    return Execution(ledger.engine, dag_id="b1__payments", task_id="payments", run_id=run_id, try_number=try_number,
                     **kw)


def test_two_executions_of_one_try_have_two_tokens(ledger):
    one, two = _execution(ledger), _execution(ledger)
    assert one.token != two.token
    assert one.token.startswith("scheduled__2026-04-01#try1#") and run_of(one.token) == "scheduled__2026-04-01"


def test_a_second_execution_of_the_same_try_never_takes_the_firsts_payment(ledger):
    """The first execution claimed G-1 (the call is out); Airflow starts the same try again.
    The second execution cannot claim it, leaves it while the first is alive, and finds it in
    doubt once the first is gone; nothing in the ledger lets it post G-1."""
    with _execution(ledger) as first:
        assert _claim(ledger, "G-1", first.token)
        with _execution(ledger) as second:
            assert not _claim(ledger, "G-1", second.token)
            stale, live = ledger.mark_stale_sending("b1", ["G-1"], second.token)
            assert stale == [] and "run scheduled__2026-04-01" in live["G-1"] and "alive" in live["G-1"]
            assert ledger.get("b1", "G-1").status == "sending"
    with _execution(ledger) as third:  # the first has ended without an answer
        stale, live = ledger.mark_stale_sending("b1", ["G-1"], third.token)
        assert (stale, live) == (["G-1"], {})
        assert not _claim(ledger, "G-1", third.token)
    row = ledger.get("b1", "G-1")
    assert row.status == "in_doubt" and "ended without recording an answer" in row.message


def test_the_old_per_try_token_is_in_doubt_for_any_new_execution(ledger):
    """A row written by an execution this table never knew (the former ``<run_id>#try<n>``
    token) has no live owner: in doubt, never taken back."""
    assert _claim(ledger, "G-2", "scheduled__2026-04-01#try1")
    with _execution(ledger) as execution:
        assert not _claim(ledger, "G-2", execution.token)
        assert ledger.mark_stale_sending("b1", ["G-2"], execution.token) == (["G-2"], {})


def test_a_lapsed_lease_is_gone(ledger, monkeypatch):
    monkeypatch.setenv("ICBRIDGE_LEASE_SECONDS", "1")
    with _execution(ledger, heartbeat_seconds=60) as quiet:  # killed worker: no more heartbeats
        assert owner(ledger.engine, quiet.token).alive
        time.sleep(1.3)
        found = owner(ledger.engine, quiet.token)
        assert found.known and not found.alive and "gone" in found.describe()


def test_the_heartbeat_keeps_a_long_execution_alive(ledger, monkeypatch):
    monkeypatch.setenv("ICBRIDGE_LEASE_SECONDS", "1")
    with _execution(ledger, heartbeat_seconds=0.2) as busy:
        time.sleep(1.5)
        assert owner(ledger.engine, busy.token).alive
    assert not owner(ledger.engine, busy.token).alive  # ended


def test_finish_changes_only_the_callers_sending_row(ledger):
    with _execution(ledger) as first:
        assert _claim(ledger, "G-3", first.token)
    with _execution(ledger) as second:
        ledger.mark_stale_sending("b1", ["G-3"], second.token)  # now in doubt
        assert not ledger.finish("b1", "G-3", "posted", run_id=second.token)
    assert not ledger.finish("b1", "G-3", "posted", run_id=first.token)  # the late answer does not overwrite
    assert ledger.get("b1", "G-3").status == "in_doubt"
