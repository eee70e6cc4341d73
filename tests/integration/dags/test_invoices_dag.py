"""The `<biller>__invoices` DAG run by Airflow (dag.test()) against real FTPS/SFTP servers
and the IC simulator over HTTP: what IC received, what was archived, what the ledger says."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from icbridge.state.db import InDoubt, Ledger
from icbsim.aus_files import make_rows, render
from tests.support.servers import ftps_conn_fields, sftp_conn_fields

pytestmark = pytest.mark.usefixtures("airflow_db")
_dates = iter(datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(10_000))



@pytest.fixture
def world(ic_sim, set_airflow_conn, dag_env, request):
    """A biller over FTPS or SFTP (param), the IC simulator, a state DB, and its DAG."""
    protocol = getattr(request, "param", "ftps")
    if protocol in ("vsftpd", "sshd"):  # the real servers (tests/support/real_servers.py)
        from tests.support.real_servers import owned_inbox, real_server

        running, fields = real_server(request, protocol)
        set_airflow_conn("t_transfer", **fields)
        protocol = "ftps" if protocol == "vsftpd" else "sftp"
    elif protocol == "ftps":
        running = request.getfixturevalue("ftps_server")
        pki = request.getfixturevalue("pki")
        set_airflow_conn("t_transfer", **ftps_conn_fields(running, pki))
    else:
        running = request.getfixturevalue("sftp_server")
        set_airflow_conn("t_transfer", **sftp_conn_fields(running))
    set_airflow_conn("t_ic", **ic_sim.conn_fields())
    inbox = running.root / "outbound"
    inbox.mkdir()
    if getattr(running, "kind", "") in ("vsftpd-explicit", "sshd"):
        owned_inbox(running, inbox)
    billers = dag_env.billers

    class World:
        sim = ic_sim.sim
        guid = ic_sim.biller_guid
        bid = ic_sim.bid
        artifacts = dag_env.artifacts

        def __init__(self) -> None:
            self.inbox = inbox
            self.archive = inbox / "archive"
            self.configure()

        def configure(self, **invoices) -> None:
            config = {
                "biller_id": "t_aus", "bid": ic_sim.bid, "name": "Test Utility", "cis": "aus",
                "ic_conn_id": "t_ic", "retries": 0,
                "invoices": {
                    "transfer": {"protocol": protocol, "conn_id": "t_transfer", "inbox": "/outbound"},
                    "invoice_format_guid": "5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F",
                    "invoice_type_id": "1",
                    **invoices,
                },
            }
            (billers / "t_aus.yaml").write_text(yaml.safe_dump(config))
            from icbridge.config.biller import load_biller
            from icbridge.dagbuild import invoices as invoices_dag

            self.dag = invoices_dag.build(load_biller(billers / "t_aus.yaml"), billers)

        def drop(self, name: str, content: bytes) -> None:
            (self.inbox / name).write_bytes(content)

        def run(self, **conf):
            return self.dag.test(logical_date=next(_dates), run_conf=conf or None)

        def uploads(self) -> list[dict]:
            return self.sim.uploads(self.guid)

        def ledger(self) -> list[dict]:
            ledger = Ledger(dag_env.state_url)
            try:
                return ledger.uploads()
            finally:
                ledger.dispose()

    return World()


def _file(bid: str, bills: int = 12, seed: int = 3, **kw) -> bytes:
    return render(make_rows(bills, bid=bid, seed=seed), **kw).encode("cp1252")


def _bad_dates(bid: str, bills: int, bad: int) -> bytes:
    rows = make_rows(bills, bid=bid, seed=5)
    accounts = list(dict.fromkeys(r["AccountNumber"] for r in rows))[:bad]
    for r in rows:
        if r["AccountNumber"] in accounts:
            r["BillDate"] = "02/30/2026"
    return render(rows).encode("cp1252")


def _states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.mark.parametrize("world", ["ftps", "sftp", "vsftpd", "sshd"], indirect=True)
def test_uploads_a_file_once_and_archives_it(world):
    name = f"{world.bid}_20261101_UB.TXT"
    world.drop(name, _file(world.bid, bills=12))
    dag_run = world.run()
    assert str(dag_run.state) == "success", _states(dag_run)
    uploads = world.uploads()
    assert [(u["file_name"], u["success"], u["invoices"]) for u in uploads] == [(f"{world.bid}_20261101_UB.BIF", 1, 12)]
    assert len(world.sim.invoices(world.guid)) == 12
    assert not (world.inbox / name).exists() and (world.archive / name).exists()
    assert [r["status"] for r in world.ledger()] == ["uploaded"]
    summary = world.artifacts / world.dag.dag_id
    assert list(summary.glob("*/*/summary.json")) and list(summary.glob("*/*/rejects.csv"))


def test_rerun_with_same_file_does_not_upload_again_unless_forced(world):
    name = f"{world.bid}_20261102_UB.TXT"
    content = _file(world.bid)
    world.drop(name, content)
    assert str(world.run().state) == "success"
    world.drop(name, content)  # the CIS sends the very same file again
    assert str(world.run().state) == "success"
    assert len(world.uploads()) == 1
    assert not (world.inbox / name).exists()
    assert len(list(world.archive.iterdir())) == 2  # the second copy archived beside the first
    world.drop(name, content)
    assert str(world.run(force=True).state) == "success"
    assert len(world.uploads()) == 2


def test_retry_after_part_two_fails_does_not_resend_part_one(world):
    world.configure(max_invoices_per_file=5)
    name = f"{world.bid}_20261103_UB.TXT"
    world.drop(name, _file(world.bid, bills=12))  # 3 parts: 5 + 5 + 2
    stem = name[:-4]
    world.sim.refuse_once(f"{stem}_02.BIF", "Simulated outage")
    world.sim.answer_late_once(f"{stem}_01.BIF", 2)  # accepted, answered after 02's refusal
    assert str(world.run().state) == "failed"
    # two parts in flight (upload_in_flight: 2): 01 and 02 go together; once 02's refusal is
    # in hand no part starts (03 waits for the next run), and 01's answer is still recorded
    sent = sorted((u["file_name"], u["success"]) for u in world.uploads())
    assert sent == [(f"{stem}_01.BIF", 1), (f"{stem}_02.BIF", 0)]
    assert [(r["part_name"], r["status"]) for r in world.ledger()] == [
        (f"{stem}_01.BIF", "uploaded"), (f"{stem}_02.BIF", "refused")]
    assert (world.inbox / name).exists(), "a file not fully uploaded stays in the inbox"
    assert str(world.run().state) == "success"
    sent = sorted((u["file_name"], u["success"]) for u in world.uploads())
    assert sent == [(f"{stem}_01.BIF", 1), (f"{stem}_02.BIF", 0), (f"{stem}_02.BIF", 1), (f"{stem}_03.BIF", 1)]
    assert len(world.sim.invoices(world.guid)) == 12


def test_one_part_at_a_time_stops_at_the_refused_part(world):
    world.configure(max_invoices_per_file=5, upload_in_flight=1)
    name = f"{world.bid}_20261107_UB.TXT"
    world.drop(name, _file(world.bid, bills=12))
    stem = name[:-4]
    world.sim.refuse_once(f"{stem}_02.BIF", "Simulated outage")
    assert str(world.run().state) == "failed"
    assert [(u["file_name"], u["success"]) for u in world.uploads()] == [(f"{stem}_01.BIF", 1), (f"{stem}_02.BIF", 0)]
    assert str(world.run().state) == "success"
    assert [u["file_name"] for u in world.uploads()[2:]] == [f"{stem}_02.BIF", f"{stem}_03.BIF"]


def test_parts_in_flight_together_and_an_in_doubt_one_is_named_and_never_resent(world, set_airflow_conn, ic_sim,
                                                                              capfd):
    """Part 01's answer comes after the client's timeout while 02 and then 03 are sent and
    answered: they are `uploaded`, 01 stays `sending` (in doubt); the next run sends nothing
    and names 01; once it is settled the file is done without sending anything again."""
    set_airflow_conn("t_ic", **ic_sim.conn_fields(timeout=2))
    world.configure(max_invoices_per_file=5)
    name = f"{world.bid}_20261108_UB.TXT"
    world.drop(name, _file(world.bid, bills=12))
    stem = name[:-4]
    world.sim.answer_late_once(f"{stem}_01.BIF", 3.5)
    assert str(world.run().state) == "failed"
    uploads = {u["file_name"]: u for u in world.uploads()}
    assert sorted(uploads) == [f"{stem}_01.BIF", f"{stem}_02.BIF", f"{stem}_03.BIF"]
    # 02 reached IC while 01 waited for its answer (one at a time, 02 would not have been sent)
    assert uploads[f"{stem}_02.BIF"]["received_at"] - uploads[f"{stem}_01.BIF"]["received_at"] < timedelta(seconds=2)
    assert [(r["part_name"], r["status"]) for r in world.ledger()] == [
        (f"{stem}_01.BIF", "sending"), (f"{stem}_02.BIF", "uploaded"), (f"{stem}_03.BIF", "uploaded")]
    capfd.readouterr()
    assert str(world.run().state) == "failed", "an in-doubt part stops the file: nothing is sent"
    out = capfd.readouterr().out
    assert f"1 part(s) sent in an earlier attempt got no answer and may be in IC: {stem}_01.BIF." in out
    assert len(world.uploads()) == 3
    ledger = Ledger(os.environ["ICBRIDGE_STATE_DB_URL"])
    assert ledger.settle("t_aus", name, f"{stem}_01.BIF", "uploaded", reason="IC has it") == 1
    ledger.dispose()
    assert str(world.run().state) == "success"
    assert len(world.uploads()) == 3, "nothing is sent twice"
    assert len(world.sim.invoices(world.guid)) == 12 and not (world.inbox / name).exists()


@pytest.mark.parametrize(
    ("label", "make", "rule"),
    [
        ("truncated", lambda bid: _file(bid)[:-200], "trailer"),
        ("other biller's BID", lambda bid: _file(bid).replace(f"\r\n{bid}|".encode(), b"\r\n999|", 1), "BID"),
        ("too many rejects", lambda bid: _bad_dates(bid, bills=10, bad=3), "reject threshold"),
    ],
)
def test_bad_files_upload_nothing_and_name_the_rule(world, caplog, label, make, rule):
    name = f"{world.bid}_20261104_UB.TXT"
    world.drop(name, make(world.bid))
    dag_run = world.run()
    assert str(dag_run.state) == "failed", label
    assert world.uploads() == []
    assert (world.inbox / name).exists()
    assert f"(rule: {rule}" in caplog.text


def test_other_files_in_the_inbox_are_ignored(world, caplog, capfd):
    world.drop("999_20261101_UB.TXT", _file("999"))
    world.drop("notes.txt", b"hello")
    dag_run = world.run()
    assert str(dag_run.state) == "success"
    assert world.uploads() == []
    logged = caplog.text + capfd.readouterr().out
    assert "ignored 999_20261101_UB.TXT" in logged and "ignored notes.txt" in logged


def test_upload_answered_after_timeout_is_in_doubt_until_ops_settle_it(world, set_airflow_conn, ic_sim, capfd):
    set_airflow_conn("t_ic", **ic_sim.conn_fields(timeout=1))
    name = f"{world.bid}_20261105_UB.TXT"
    part = f"{world.bid}_20261105_UB.BIF"
    world.drop(name, _file(world.bid))
    world.sim.answer_late_once(part, 2.5)
    assert str(world.run().state) == "failed"
    assert [u["success"] for u in world.uploads()] == [1]  # IC has it; we could not know
    assert [r["status"] for r in world.ledger()] == ["sending"]
    assert str(world.run().state) == "failed", "an in-doubt part is never re-sent blindly"
    assert "ledger settle" in capfd.readouterr().out
    assert len(world.uploads()) == 1
    from icbridge.state.db import Ledger

    ledger = Ledger(os.environ["ICBRIDGE_STATE_DB_URL"])
    assert ledger.settle("t_aus", name, part, "uploaded", reason="IC has it") == 1
    ledger.dispose()
    assert str(world.run().state) == "success"
    assert len(world.uploads()) == 1 and not (world.inbox / name).exists()


def test_file_taken_by_a_concurrent_run_is_skipped_not_failed(world, tmp_path):
    """Two runs list the same file; the first archives it; the second must not fail."""
    from icbridge.config.biller import load_biller
    from icbridge.flows.invoices import process_file
    from icbridge.hooks.transfer import open_remote_folder

    name = f"{world.bid}_20261106_UB.TXT"
    world.drop(name, _file(world.bid))
    assert str(world.run().state) == "success"  # archived
    ledger = Ledger(os.environ["ICBRIDGE_STATE_DB_URL"])
    biller = load_biller(Path(os.environ["ICBRIDGE_BILLERS_DIR"]) / "t_aus.yaml")
    with open_remote_folder(biller.invoices.transfer.protocol, "t_transfer") as folder:
        outcome = process_file(
            file_name=name, folder=folder, uploader=lambda *_: pytest.fail("must not upload"), ledger=ledger,
            biller=biller, biller_guid=world.guid, workdir=tmp_path, artifacts_dir=tmp_path / "a",
            run_id="late-run", today=datetime(2026, 11, 6).date(),
        )
    ledger.dispose()
    assert outcome.status == "skipped"
    assert len(world.uploads()) == 1


def test_ic_answers_to_an_upload_refused_or_in_doubt_never_guessed(world, set_airflow_conn, ic_sim):
    """IC behind a raw-bytes server (tests/support/hostile_http.py): a SOAP fault is IC's refusal (part
    `refused`, the file not archived); an empty answer may mean IC took it (part stays
    `sending`: in doubt, never re-sent by the next run)."""
    from tests.support.hostile_http import HostileServer, answer, envelope

    with HostileServer() as hostile:
        set_airflow_conn("t_ic", **{**ic_sim.conn_fields(), "host": hostile.url})
        fault = ("<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Invalid BIF header</faultstring>"
                 "</soap:Fault>")
        hostile.script("/CloudInvoicing.asmx", answer("500 Internal Server Error", envelope(fault)))
        name = f"{world.bid}_20261101_UB.TXT"
        world.drop(name, _file(world.bid, bills=4))
        assert str(world.run().state) == "failed"
        (part,) = world.ledger()
        assert part["status"] == "refused" and "Invalid BIF header" in part["message"]
        assert (world.inbox / name).exists()  # not archived

        ns = "https://www.invoicecloud.com/portal/webservices/CloudInvoicing/"
        hostile.script("/CloudInvoicing.asmx", answer("200 OK", envelope(f'<UploadInvoiceFileResponse xmlns="{ns}"/>')))
        world.drop(name, _file(world.bid, bills=4, seed=9))  # a new content: a new upload
        assert str(world.run().state) == "failed"
        assert world.ledger()[-1]["status"] == "sending"  # in doubt
        sent = len(hostile.received("/CloudInvoicing.asmx"))
        assert str(world.run().state) == "failed"  # the next run stops: in doubt, not re-sent
        assert len(hostile.received("/CloudInvoicing.asmx")) == sent


def test_parts_in_flight_against_raw_iis_answers(world, set_airflow_conn, ic_sim, capfd):
    """Two parts in flight against a raw-bytes server answering as IIS/ASP.NET does (not our
    simulator): a SOAP fault to both is two refusals, both recorded and named, and the third
    part never starts; an empty 200 answer to both leaves both in doubt, named together, and
    the next run sends nothing."""
    from tests.support.hostile_http import HostileServer, answer, envelope

    world.configure(max_invoices_per_file=5)
    stem = f"{world.bid}_20261109_UB"
    with HostileServer() as hostile:
        set_airflow_conn("t_ic", **{**ic_sim.conn_fields(), "host": hostile.url})
        fault = ("<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Invalid BIF header</faultstring>"
                 "</soap:Fault>")
        hostile.script("/CloudInvoicing.asmx", answer("500 Internal Server Error", envelope(fault)))
        world.drop(f"{stem}.TXT", _file(world.bid, bills=12))  # 3 parts: 5 + 5 + 2
        capfd.readouterr()
        assert str(world.run().state) == "failed"
        assert f"IC refused {stem}_01.BIF: SOAP fault: Invalid BIF header; IC refused {stem}_02.BIF" in (
            capfd.readouterr().out)
        assert len(hostile.received("/CloudInvoicing.asmx")) == 2
        assert [(r["part_name"], r["status"]) for r in world.ledger()] == [
            (f"{stem}_01.BIF", "refused"), (f"{stem}_02.BIF", "refused")]

        ns = "https://www.invoicecloud.com/portal/webservices/CloudInvoicing/"
        hostile.script("/CloudInvoicing.asmx", answer("200 OK", envelope(f'<UploadInvoiceFileResponse xmlns="{ns}"/>')))
        world.drop(f"{stem}.TXT", _file(world.bid, bills=12, seed=9))  # new content: a new file record
        assert str(world.run().state) == "failed"
        assert [r["status"] for r in world.ledger()[2:]] == ["sending", "sending"]  # both in doubt
        sent = len(hostile.received("/CloudInvoicing.asmx"))
        capfd.readouterr()
        assert str(world.run().state) == "failed"
        assert f"2 part(s) sent in an earlier attempt got no answer and may be in IC: {stem}_01.BIF, {stem}_02.BIF" in (
            capfd.readouterr().out)
        assert len(hostile.received("/CloudInvoicing.asmx")) == sent


def test_a_large_file_is_mapped_by_workers_and_uploaded_in_parts_by_bytes(world):
    """An initial-dump-like file above the parallel threshold (20,000 bills, ~13.7 MB): the
    Airflow task maps it from disk with 2 workers the forkserver starts (they never import the
    task's __main__) and uploads it in parts no larger than max_bytes_per_file; IC receives
    every invoice once; the task reports each stage's time."""
    from icbridge.mapping import ranges
    from icbsim.aus_files import write_file

    cap = 2 << 20
    world.configure(max_bytes_per_file=cap)
    name = f"{world.bid}_20261101_UB.TXT"
    path = write_file(world.inbox / name, 20_000, bid=world.bid)
    assert path.stat().st_size >= ranges.PARALLEL_MIN_BYTES
    dag_run = world.run()
    assert str(dag_run.state) == "success", _states(dag_run)
    uploads = world.uploads()
    assert len(uploads) >= 5 and all(u["success"] for u in uploads)
    assert sum(u["invoices"] for u in uploads) == 20_000 == len(world.sim.invoices(world.guid))
    bifs = world.artifacts / world.dag.dag_id
    summary = json.loads(next(bifs.glob("*/*/summary.json")).read_text())
    received = {u["file_name"]: u["invoices"] for u in uploads}  # parts go two at a time: any order
    assert {p["name"]: p["invoices"] for p in summary["bifs"]} == received and len(received) == len(uploads)
    ti = next(t for t in dag_run.get_task_instances() if t.task_id.startswith("upload"))
    seconds = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)["seconds"]
    assert set(seconds) == {"download", "map", "upload", "archive"}


def test_a_retry_that_can_only_end_in_doubt_stops_before_mapping(world, tmp_path, set_airflow_conn, ic_sim):
    """Issue 22 item 12: after a part was left in doubt, the next try finds it right after
    download and fails at once, without mapping the file again (minutes for a large file) and
    without writing artifacts: the in-doubt message, the settle command."""
    from icbridge.config.biller import load_biller
    from icbridge.flows.invoices import process_file
    from icbridge.hooks.transfer import open_remote_folder

    set_airflow_conn("t_ic", **ic_sim.conn_fields(timeout=2))
    world.configure(max_invoices_per_file=5)
    name = f"{world.bid}_20261109_UB.TXT"
    world.drop(name, _file(world.bid, bills=12))
    world.sim.answer_late_once(f"{name[:-4]}_01.BIF", 3.5)
    assert str(world.run().state) == "failed"
    assert [r["status"] for r in world.ledger()] == ["sending", "uploaded", "uploaded"]
    ledger = Ledger(os.environ["ICBRIDGE_STATE_DB_URL"])
    biller = load_biller(Path(os.environ["ICBRIDGE_BILLERS_DIR"]) / "t_aus.yaml")
    try:
        with open_remote_folder(biller.invoices.transfer.protocol, "t_transfer") as folder, \
                pytest.raises(InDoubt, match=r"sent in an earlier attempt got no answer .* --reason") as stopped:
            process_file(file_name=name, folder=folder, uploader=lambda *_: pytest.fail("must not upload"),
                         ledger=ledger, biller=biller, biller_guid=world.guid, workdir=tmp_path / "w",
                         artifacts_dir=tmp_path / "a", run_id="retry#try2#x", today=datetime(2026, 11, 9).date())
    finally:
        ledger.dispose()
    assert name in str(stopped.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "w" / "bif").exists()  # never mapped
