"""The upload ledger on a real SQLite file and on PostgreSQL (skipped locally without one;
required in CI)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from icbridge.state.db import Ledger, metadata
from tests.support.services import postgres_schema, state_store


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    with state_store(request.param, tmp_path, Ledger) as store:
        yield store


def _upload(led: Ledger, record, index: int, status: str = "uploaded") -> None:
    led.mark_sending(record, index, f"F_{index:02d}.BIF", "ab" * 32, 10, "100.00", "run-1")
    if status != "sending":
        led.mark_part(record, index, status, ic_file_id=f"id-{index}")


def test_tables_are_created_and_plain(ledger):
    with ledger.engine.connect() as conn:
        names = set(metadata.tables)
        for name in names:
            conn.execute(text(f"SELECT count(*) FROM {name}")).scalar()
    # other flows' modules (payments, deliveries, Balance All) add their tables to the same metadata
    assert {"icb_source_files", "icb_invoice_uploads"} <= names


def test_file_is_known_by_name_and_checksum(ledger):
    first = ledger.begin_file("b1", "123_20261101_UB.TXT", "a" * 64, 10, "run-1", force=False)
    assert first.status == "processing" and first.generation == 1
    again = ledger.begin_file("b1", "123_20261101_UB.TXT", "a" * 64, 10, "run-2", force=False)
    assert again.id == first.id
    other_bytes = ledger.begin_file("b1", "123_20261101_UB.TXT", "b" * 64, 10, "run-3", force=False)
    other_biller = ledger.begin_file("b2", "123_20261101_UB.TXT", "a" * 64, 10, "run-3", force=False)
    assert len({first.id, other_bytes.id, other_biller.id}) == 3


def test_parts_uploaded_are_remembered_across_attempts(ledger):
    record = ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-1", force=False)
    _upload(ledger, record, 1)
    _upload(ledger, record, 2, status="refused")
    retry = ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-1", force=False)
    assert ledger.part_status(retry, 1) == "uploaded"
    assert ledger.part_status(retry, 2) == "refused"
    assert ledger.part_status(retry, 3) is None


def test_uploaded_file_is_not_reopened_unless_forced(ledger):
    record = ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-1", force=False)
    _upload(ledger, record, 1)
    ledger.finish_file(record, "uploaded", summary={"bills_read": 10})
    assert ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-2", force=False).status == "uploaded"
    forced = ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-3", force=True)
    assert (forced.status, forced.generation) == ("processing", 2)
    assert ledger.part_status(forced, 1) is None  # a new generation uploads every part again
    _upload(ledger, forced, 1)
    assert [(u["generation"], u["status"]) for u in ledger.uploads("b1")] == [(1, "uploaded"), (2, "uploaded")]


def test_in_doubt_part_is_settled_by_ops(ledger):
    record = ledger.begin_file("b1", "F.TXT", "a" * 64, 10, "run-1", force=False)
    _upload(ledger, record, 1, status="sending")
    assert ledger.settle("b1", "F.TXT", "F_01.BIF", "uploaded", reason="IC has it") == 1
    assert ledger.part_status(record, 1) == "uploaded"
    _upload(ledger, record, 2, status="sending")
    assert ledger.settle("b1", "F.TXT", "F_02.BIF", "resend", reason="IC lacks it") == 1
    assert ledger.part_status(record, 2) == "not_sent"
    assert ledger.settle("b1", "F.TXT", "F_02.BIF", "resend", reason="again") == 0  # nothing in doubt any more
    with pytest.raises(ValueError, match="needs a reason"):
        ledger.settle("b1", "F.TXT", "F_01.BIF", "resend")
    with pytest.raises(ValueError):
        ledger.settle("b1", "F.TXT", "F_02.BIF", "maybe", reason="x")


_FIRST_TASK = """
import sys, time
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process starts its first statement at once
from icbridge.state.db import Ledger
from icbridge.state.deliveries import DeliveryLog
from icbridge.state.payments import PaymentLedger
for store in (PaymentLedger(sys.argv[1]), DeliveryLog(sys.argv[1]), Ledger(sys.argv[1])):
    store.dispose()
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_first_tasks_at_once_create_the_schema_once_with_a_version(kind, tmp_path, capsys):
    """Issue 27 item 3: six first-ever tasks on a fresh state DB, at the same instant, in six
    processes: every one succeeds (no CREATE TABLE race), and the version is readable."""
    import subprocess
    import sys
    import time

    from icbridge.cli import main as cli
    from icbridge.state.schema import SCHEMA_VERSION

    def race(url: str) -> None:
        start = time.time() + 4
        procs = [subprocess.Popen([sys.executable, "-c", _FIRST_TASK, url, str(start)], stderr=subprocess.PIPE)
                 for _ in range(6)]
        errors = [p.communicate(timeout=120)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        assert cli(["state-db", "--db", url, "version"]) == 0
        assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out

    if kind == "sqlite":
        race(f"sqlite:///{tmp_path / 'state.db'}")
        return
    with postgres_schema() as url:
        race(url)


def test_runs_seeing_a_new_file_at_once_share_its_record(ledger):
    """Issue 22 item 7: eight runs start on one new file at the same instant: every one gets
    the one record, none fails with an IntegrityError."""
    import threading

    barrier = threading.Barrier(8)
    got: list[object] = []

    def start(n: int) -> None:
        barrier.wait()
        try:
            got.append(ledger.begin_file("b1", "NEW.TXT", "c" * 64, 10, f"run-{n}", force=False).id)
        except Exception as exc:  # noqa: BLE001 - asserted below
            got.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len(set(got)) == 1 and isinstance(got[0], int), got
    assert len(ledger.files("b1")) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_state_db_of_version_4_gains_the_added_columns_and_keeps_its_runs(kind, tmp_path):
    """Schema 5 adds a column to a table that existed (icb_balance_runs.total_mismatches): a
    version-4 state DB holding a run is upgraded in place, the run kept with 0 total-due mismatches."""
    from contextlib import nullcontext

    from sqlalchemy import text

    from icbridge.state import schema
    from icbridge.state.db import make_engine
    from icbridge.state.reconcile import ReconcileStore

    with (nullcontext(f"sqlite:///{tmp_path / 'state.db'}") if kind == "sqlite" else postgres_schema()) as url:
        engine = make_engine(url)
        store = ReconcileStore(engine=engine)
        run_id = store.start_run("b1", "2026-W49", dag_run_id="scheduled__1", dry_run=False,
                                 corrections_allowed=False, error_threshold_pct=2.0)
        with engine.begin() as conn:  # what version 4 had
            conn.execute(text("ALTER TABLE icb_balance_runs DROP COLUMN total_mismatches"))
            conn.execute(text("UPDATE icb_schema SET version = 4"))
        schema._done.clear()
        assert schema.ensure_schema(engine) == 5 and schema.schema_version(engine) == 5
        run = store.run(run_id)
        assert run is not None and run.counts["total_mismatch"] == 0 and run.biller_id == "b1"
        engine.dispose()
