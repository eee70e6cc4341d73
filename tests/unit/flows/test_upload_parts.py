"""upload_parts (flows/invoices.py): a file's BIF parts sent several at a time, against a real
SQLite ledger, with answers scripted per part (the uploader is IC's side here: what it says,
and when). What must hold with parts in flight: every answer in hand is recorded, also when
the loop is left by an error of its own; no part starts once a failure is known; the error
raised says what the failures need (in doubt > refused > not sent)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from icbridge.flows.invoices import FileOutcome, UploadAnswer, UploadRefused, upload_parts
from icbridge.mapping.aus_to_bif import BifPart
from icbridge.soap.errors import NoAnswer, NotSent
from icbridge.state.db import InDoubt, Ledger


class Script:
    """IC's answers by part name: (delay in seconds, answer or exception); records who was sent.
    ``together``: parts that answer only once all of them have been sent (so a test of parts
    in flight together does not depend on how fast the loop starts the next one); ``after``:
    a part that answers only once this event is set."""

    def __init__(
        self,
        answers: dict[str, tuple[float, object]],
        together: tuple[str, ...] = (),
        after: dict[str, threading.Event] | None = None,
    ) -> None:
        self.answers = answers
        self.sent: list[str] = []
        self.lock = threading.Lock()
        self.together = together
        self.all_sent = threading.Event()
        self.after = after or {}

    def __call__(self, name: str, content: bytes) -> UploadAnswer:
        with self.lock:
            self.sent.append(name)
            if set(self.together) <= set(self.sent):
                self.all_sent.set()
        if name in self.together:
            assert self.all_sent.wait(30), f"{self.together} were not all sent"
        if name in self.after:
            assert self.after[name].wait(30), f"{name}: what it answers after did not happen"
        delay, answer = self.answers.get(name, (0.0, UploadAnswer(True, "", f"id-{name}", 1)))
        time.sleep(delay)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]


@pytest.fixture
def ledger(tmp_path: Path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield ledger
    ledger.dispose()


def _parts(tmp_path: Path, n: int) -> list[BifPart]:
    parts = []
    for i in range(1, n + 1):
        path = tmp_path / f"F_{i:02d}.BIF"
        path.write_bytes(b"FH,...\r\n")
        parts.append(BifPart(path.name, path, 1, Decimal("1.00"), f"{i:064x}"))
    return parts


def _run(ledger: Ledger, parts: list[BifPart], script: Script, in_flight: int = 2, force: bool = False):
    record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, "run-1", force)
    outcome = FileOutcome("F.TXT", "uploaded", {})
    upload_parts(parts, record, ledger, script, outcome, run_id="run-1", force=force, in_flight=in_flight,
                 biller_id="b1")
    return outcome


def _states(ledger: Ledger) -> dict[str, str]:
    return {row["part_name"]: row["status"] for row in ledger.uploads()}


def test_no_part_starts_once_a_failure_is_known_and_the_retry_sends_only_the_rest(ledger, tmp_path):
    parts = _parts(tmp_path, 6)
    script = Script({"F_01.BIF": (0.6, UploadAnswer(True, "", "id-1", 1)),
                     "F_02.BIF": (0.0, NotSent("connection refused")),
                     "F_03.BIF": (0.3, UploadAnswer(True, "", "id-3", 1))},
                    together=("F_01.BIF", "F_02.BIF", "F_03.BIF"))
    with pytest.raises(NotSent):
        _run(ledger, parts, script, in_flight=3)
    # 01-03 start at once; 02's failure is in hand long before 01's or 03's answer frees a slot
    assert sorted(script.sent) == ["F_01.BIF", "F_02.BIF", "F_03.BIF"]
    assert _states(ledger) == {"F_01.BIF": "uploaded", "F_02.BIF": "not_sent", "F_03.BIF": "uploaded"}
    retry = Script({})
    outcome = _run(ledger, parts, retry, in_flight=3)
    assert sorted(retry.sent) == ["F_02.BIF", "F_04.BIF", "F_05.BIF", "F_06.BIF"]
    assert outcome.uploaded_parts == ["F_02.BIF", "F_04.BIF", "F_05.BIF", "F_06.BIF"]  # part order
    assert outcome.skipped_parts == ["F_01.BIF", "F_03.BIF"]


def test_answers_in_hand_are_recorded_when_the_ledger_fails_on_another(ledger, tmp_path, monkeypatch):
    """mark_part of 01 fails (the state DB locked, say) while 02 is in flight: 02 is awaited
    and recorded `uploaded` all the same, 01 stays `sending` (in doubt), nothing new starts
    and the error surfaces."""
    parts = _parts(tmp_path, 3)
    real = Ledger.mark_part

    def flaky(self, record, index, status, **kw):
        if index == 1:
            raise RuntimeError("database is locked")
        return real(self, record, index, status, **kw)

    monkeypatch.setattr(Ledger, "mark_part", flaky)
    script = Script({"F_02.BIF": (0.3, UploadAnswer(True, "", "id-2", 1))}, together=("F_01.BIF", "F_02.BIF"))
    with pytest.raises(RuntimeError, match="database is locked"):
        _run(ledger, parts, script)
    assert _states(ledger) == {"F_01.BIF": "sending", "F_02.BIF": "uploaded"}
    assert "F_03.BIF" not in script.sent


def test_an_interrupt_still_records_the_parts_answered(ledger, tmp_path):
    """A BaseException from a call (as a signal's would be) ends the upload; the part in
    flight is awaited and recorded `uploaded`, the interrupted one stays `sending`."""
    parts = _parts(tmp_path, 3)
    script = Script({"F_01.BIF": (0.0, KeyboardInterrupt()), "F_02.BIF": (0.3, UploadAnswer(True, "", "id", 1))},
                    together=("F_01.BIF", "F_02.BIF"))
    with pytest.raises(KeyboardInterrupt):
        _run(ledger, parts, script)
    assert _states(ledger) == {"F_01.BIF": "sending", "F_02.BIF": "uploaded"}
    assert "F_03.BIF" not in script.sent
    with pytest.raises(InDoubt, match=r"1 part\(s\) sent in an earlier attempt .*: F_01\.BIF\."):
        _run(ledger, parts, Script({}))


def test_refused_and_in_doubt_together_fail_as_in_doubt_naming_both(ledger, tmp_path):
    parts = _parts(tmp_path, 2)
    script = Script({"F_01.BIF": (0.0, UploadAnswer(False, "Invalid BIF header")),
                     "F_02.BIF": (0.1, NoAnswer("read timed out"))}, together=("F_01.BIF", "F_02.BIF"))
    with pytest.raises(InDoubt) as caught:
        _run(ledger, parts, script)
    message = str(caught.value)
    assert "IC's answer to F_02.BIF cannot be judged (read timed out)" in message
    assert "IC refused F_01.BIF: Invalid BIF header" in message and "ledger settle" in message
    assert _states(ledger) == {"F_01.BIF": "refused", "F_02.BIF": "sending"}


def test_a_refusal_is_final_even_when_another_part_was_not_sent(ledger, tmp_path):
    """NotSent alone is retried by Airflow; with a refusal beside it the task must stop for a
    person, or the retry would send the refused part again."""
    parts = _parts(tmp_path, 2)
    script = Script({"F_01.BIF": (0.0, NotSent("connection reset before the request")),
                     "F_02.BIF": (0.1, UploadAnswer(False, "FH BillerGuid is not yours"))},
                    together=("F_01.BIF", "F_02.BIF"))
    with pytest.raises(UploadRefused, match="IC refused F_02.BIF: FH BillerGuid is not yours; not sent: F_01.BIF"):
        _run(ledger, parts, script)
    assert _states(ledger) == {"F_01.BIF": "not_sent", "F_02.BIF": "refused"}


def test_one_in_flight_sends_one_after_the_other(ledger, tmp_path):
    parts = _parts(tmp_path, 3)
    script = Script({"F_02.BIF": (0.0, UploadAnswer(False, "no"))})
    with pytest.raises(UploadRefused):
        _run(ledger, parts, script, in_flight=1)
    assert script.sent == ["F_01.BIF", "F_02.BIF"]


def test_force_sends_parts_left_in_doubt_again(ledger, tmp_path):
    parts = _parts(tmp_path, 2)
    with pytest.raises(InDoubt):
        _run(ledger, parts, Script({"F_01.BIF": (0.0, NoAnswer("x")), "F_02.BIF": (0.0, NoAnswer("y"))},
                                   together=("F_01.BIF", "F_02.BIF")))
    with pytest.raises(InDoubt, match=r"2 part\(s\) .*: F_01\.BIF, F_02\.BIF\."):
        _run(ledger, parts, Script({}))
    again = Script({})
    _run(ledger, parts, again, force=True)
    assert sorted(again.sent) == ["F_01.BIF", "F_02.BIF"]


def test_a_known_refusal_is_what_the_task_ends_on_even_when_the_ledger_fails_after_it(ledger, tmp_path, monkeypatch):
    """Part 1 is refused while the ledger fails to claim part 2 ("database is locked"): the
    task ends refused (final), not on the ledger's error, which Airflow would retry, sending
    the refused part again."""
    parts = _parts(tmp_path, 3)
    real = Ledger.mark_sending
    claiming_02 = threading.Event()

    def flaky(self, record, index, *args, **kw):
        if index == 2:
            claiming_02.set()
            time.sleep(0.3)  # 01's refusal comes meanwhile
            raise RuntimeError("database is locked")
        return real(self, record, index, *args, **kw)

    monkeypatch.setattr(Ledger, "mark_sending", flaky)
    script = Script({"F_01.BIF": (0.0, UploadAnswer(False, "Invalid BIF header"))}, after={"F_01.BIF": claiming_02})
    with pytest.raises(UploadRefused, match="IC refused F_01.BIF: Invalid BIF header") as caught:
        _run(ledger, parts, script)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert _states(ledger) == {"F_01.BIF": "refused"}


def test_every_answer_in_hand_is_recorded_when_several_calls_are_interrupted(ledger, tmp_path):
    parts = _parts(tmp_path, 3)
    script = Script({"F_01.BIF": (0.1, KeyboardInterrupt()), "F_02.BIF": (0.2, KeyboardInterrupt()),
                     "F_03.BIF": (0.4, UploadAnswer(True, "", "id-3", 1))})
    with pytest.raises(KeyboardInterrupt):
        _run(ledger, parts, script, in_flight=3)
    assert _states(ledger) == {"F_01.BIF": "sending", "F_02.BIF": "sending", "F_03.BIF": "uploaded"}


@pytest.mark.parametrize("answer", [None, UploadAnswer(None, ""), UploadAnswer("false", "")])  # type: ignore[arg-type]
def test_an_answer_that_is_not_a_verdict_is_in_doubt(ledger, tmp_path, answer):
    parts = _parts(tmp_path, 1)
    with pytest.raises(InDoubt, match="cannot be judged"):
        _run(ledger, parts, Script({"F_01.BIF": (0.0, answer)}))
    assert _states(ledger) == {"F_01.BIF": "sending"}


def test_a_part_that_cannot_be_read_is_not_sent_not_in_doubt(ledger, tmp_path):
    parts = _parts(tmp_path, 2)
    parts[0].path.unlink()
    script = Script({})
    with pytest.raises(NotSent, match="F_01.BIF could not be read"):
        _run(ledger, parts, script, in_flight=1)
    assert script.sent == [] and _states(ledger) == {"F_01.BIF": "not_sent"}


def test_a_part_another_run_took_since_the_scan_is_not_sent_again(ledger, tmp_path, monkeypatch):
    """Two runs on one file: this run scanned part 1 as never tried, then the other run sent
    it and IC accepted it. The claim fails: this run does not send it and ends in doubt,
    pointing at the other run; the part stays as the other run recorded it."""
    parts = _parts(tmp_path, 2)
    record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, "run-0", False)
    assert ledger.mark_sending(record, 1, "F_01.BIF", "1" * 64, 1, "1.00", "run-0")
    ledger.mark_part(record, 1, "uploaded", ic_file_id="id-other")
    monkeypatch.setattr(Ledger, "part_state", lambda self, rec, index: None)  # the scan came first
    script = Script({})
    with pytest.raises(InDoubt, match="being sent by another run, not by this one: F_01.BIF"):
        _run(ledger, parts, script, in_flight=1)
    assert script.sent == []
    assert _states(ledger) == {"F_01.BIF": "uploaded"}


def test_a_claim_takes_only_a_part_that_may_be_sent(ledger):
    record = ledger.begin_file("b1", "G.TXT", "cd" * 32, 10, "run-1", False)

    def claim(index: int, force: bool = False) -> bool:
        return ledger.mark_sending(record, index, f"G_{index:02d}.BIF", "1" * 64, 1, "1.00", "run-1", force=force)

    assert claim(1) and not claim(1), "a part being sent is not claimed again"
    assert claim(1, force=True), "force takes a part left in doubt"
    for status, again in (("not_sent", True), ("refused", True), ("uploaded", False)):
        ledger.mark_part(record, 1, status)
        assert claim(1) is again, status
    assert not claim(1, force=True), "an uploaded part is never claimed (force starts a new generation)"
    assert _states(ledger) == {"G_01.BIF": "uploaded"}


def test_a_part_a_live_run_is_sending_is_named_not_called_an_earlier_attempt(ledger, tmp_path):
    """Issue 22 item 2: two backfill runs on one file. Run A is waiting for IC's answer to part 1
    when run B starts: B must say the part is being sent by A (named, alive) and that A records
    the answer, never "sent in an earlier attempt ... settle"; `settle` refuses the part while A
    holds its lease, and A's answer is what the ledger keeps."""
    from icbridge.state.executions import Execution

    parts = _parts(tmp_path, 1)
    release = threading.Event()
    script_a = Script({}, after={"F_01.BIF": release})
    errors: list[BaseException] = []
    with Execution(ledger.engine, dag_id="b1__invoices", task_id="upload_file", run_id="backfill__A",
                   try_number=1) as run_a:
        def a() -> None:
            record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, run_a.token, False)
            try:
                upload_parts(parts, record, ledger, script_a, FileOutcome("F.TXT", "uploaded", {}),
                             run_id=run_a.token, force=False, in_flight=1, biller_id="b1")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=a)
        thread.start()
        deadline = time.monotonic() + 10
        while not script_a.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert script_a.sent == ["F_01.BIF"]
        with Execution(ledger.engine, dag_id="b1__invoices", task_id="upload_file", run_id="backfill__B",
                       try_number=1) as run_b:
            record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, run_b.token, False)
            script_b = Script({})
            with pytest.raises(InDoubt) as raised:
                upload_parts(parts, record, ledger, script_b, FileOutcome("F.TXT", "uploaded", {}),
                             run_id=run_b.token, force=False, in_flight=1, biller_id="b1")
        message = str(raised.value)
        assert "being sent by another run right now" in message and "run backfill__A" in message
        assert "alive" in message and "check that run" in message
        assert "earlier attempt" not in message and "--as uploaded|resend" not in message
        assert script_b.sent == []
        from icbridge.state.db import OwnerAlive

        with pytest.raises(OwnerAlive, match="being sent right now by run backfill__A"):
            ledger.settle("b1", "F.TXT", "F_01.BIF", "resend", reason="x")
        release.set()
        thread.join(30)
    assert errors == []
    [row] = ledger.uploads("b1")
    assert (row["status"], row["ic_file_id"]) == ("uploaded", "id-F_01.BIF")


def test_a_part_left_sending_by_a_gone_run_is_in_doubt_and_settled_with_who(ledger, tmp_path):
    """The owner ended (or its lease lapsed) without an answer: the part is in doubt for a person,
    and `settle` takes it and records who settled it."""
    from icbridge.state.executions import Execution

    parts = _parts(tmp_path, 1)
    with Execution(ledger.engine, dag_id="d", task_id="t", run_id="scheduled__X", try_number=1) as gone:
        record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, gone.token, False)
        assert ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", gone.token)
    with pytest.raises(InDoubt, match="sent in an earlier attempt got no answer"):
        _run(ledger, parts, Script({}))
    assert ledger.settle("b1", "F.TXT", "F_01.BIF", "resend", by="ops-anna", reason="not in IC") == 1
    [row] = ledger.uploads("b1")
    assert (row["status"], row["message"]) == ("not_sent", "settled by ops as resend by ops-anna")


def test_a_late_answer_never_overwrites_a_settle_or_another_runs_upload(ledger, tmp_path):
    """Review finding: run A's lease lapsed, a person settled its part as resend and run B
    uploaded it; A's late answer must not turn B's `uploaded` back (a third run would send it)."""
    parts = _parts(tmp_path, 1)
    record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, "A#try1#a", False)
    assert ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", "A#try1#a")
    assert ledger.settle("b1", "F.TXT", "F_01.BIF", "resend", reason="not in IC") == 1
    assert ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", "B#try1#b")
    assert ledger.mark_part(record, 1, "uploaded", ic_file_id="id-B", run_id="B#try1#b")
    assert not ledger.mark_part(record, 1, "not_sent", message="late", run_id="A#try1#a")
    [row] = ledger.uploads("b1")
    assert (row["status"], row["ic_file_id"]) == ("uploaded", "id-B")


def test_force_never_takes_a_part_a_live_run_is_sending(ledger, tmp_path):
    from icbridge.state.executions import Execution

    parts = _parts(tmp_path, 1)
    with Execution(ledger.engine, dag_id="d", task_id="t", run_id="A", try_number=1) as a:
        record = ledger.begin_file("b1", "F.TXT", "ab" * 32, 10, a.token, False)
        assert ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", a.token)
        assert not ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", "B#try1#b", force=True)
    assert ledger.mark_sending(record, 1, "F_01.BIF", parts[0].sha256, 1, "1.00", "B#try1#b", force=True)  # gone now
