"""The `<biller>__payment_export` DAG run by Airflow (dag.test()) against the IC simulator
over HTTP and real FTPS / SFTP / SMTP servers on 127.0.0.1: the files the biller receives,
byte for byte, and what the state DB says."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import update

from icbridge.layouts.logis import build_export, closure
from icbridge.state.deliveries import DeliveryLog, deliveries
from icbsim.smtp import SMTPServer
from tests.support.servers import ftps_conn_fields, sftp_conn_fields

pytestmark = pytest.mark.usefixtures("airflow_db")
NY = ZoneInfo("America/New_York")


@pytest.fixture
def smtp_server(pki):
    user, password = "icbridge", secrets.token_urlsafe(16)
    with SMTPServer(users={user: password}, pki=pki) as server:
        server.login = (user, password)
        yield server


@pytest.fixture
def world(ic_sim, set_airflow_conn, dag_env, request):
    """A Logis biller delivering by FTPS, SFTP or email (param), its DAG, a state DB."""
    method = getattr(request, "param", "sftp")
    if method in ("vsftpd", "sshd"):  # the real servers (tests/support/real_servers.py)
        from tests.support.real_servers import owned_inbox, real_server

        running, fields = real_server(request, method)
        set_airflow_conn("t_out", **fields)
        (running.root / "cloudpay").mkdir()
        owned_inbox(running, running.root / "cloudpay")
        method = "ftps" if method == "vsftpd" else "sftp"
    elif method == "ftps":
        running = request.getfixturevalue("ftps_server")
        set_airflow_conn("t_out", **ftps_conn_fields(running, request.getfixturevalue("pki")))
        (running.root / "cloudpay").mkdir()
    elif method == "sftp":
        running = request.getfixturevalue("sftp_server")
        set_airflow_conn("t_out", **sftp_conn_fields(running))
        (running.root / "cloudpay").mkdir()
    else:
        running = request.getfixturevalue("smtp_server")
        user, password = running.login
        set_airflow_conn(
            "t_out", conn_type="smtp", host="127.0.0.1", port=running.port, login=user, password=password,
            extra={"disable_ssl": True, "from_email": "payments@icbridge.test",
                   "ca_file": str(request.getfixturevalue("pki").ca_cert), "timeout": 10},
        )
    set_airflow_conn("t_ic", **ic_sim.conn_fields())
    billers = dag_env.billers

    class World:
        sim = ic_sim.sim
        guid = ic_sim.biller_guid
        bid = ic_sim.bid
        server = running

        def __init__(self) -> None:
            self.method = method
            self.configure()

        def configure(self, **export) -> None:
            section = {"delivery": method, "conn_id": "t_out", **export}
            if method == "email":
                section.setdefault("email_to", ["ap@biller.test", "it@biller.test"])
            else:
                section.setdefault("folder", "/cloudpay")
            config = {"biller_id": "t_logis", "bid": ic_sim.bid, "name": "Test Town", "cis": "logis",
                      "timezone": "America/New_York", "ic_conn_id": "t_ic", "retries": 0, "payment_export": section}
            (billers / "t_logis.yaml").write_text(yaml.safe_dump(config))
            from icbridge.config.biller import load_biller
            from icbridge.dagbuild import payment_export

            self.biller = load_biller(billers / "t_logis.yaml")
            self.dag = payment_export.build(self.biller, billers)

        def pay(self, when: datetime, amount: str = "10.00", **kw) -> str:
            kw.setdefault("channel", "CloudPay")
            kw.setdefault("payment_type", "CreditCard")
            return self.sim.add_payment(self.guid, kw.pop("account", "1001"), kw.pop("invoice", ""), amount, when,
                                        **kw)

        def run(self, day: date, *, next_morning: bool = False, **conf):
            """Run for business day ``day``: at its closure, or as a manual run the morning after."""
            at = closure(day, NY) + (timedelta(hours=8) if next_morning else timedelta())
            return self.dag.test(logical_date=at, run_conf=conf or None)

        def files(self) -> dict[str, bytes]:
            """What the biller has received: final names only (FTP), or attachments (email)."""
            if method == "email":
                got: dict[str, bytes] = {}
                for mail in running.received:
                    for name, content in mail.attachments().items():
                        assert name not in got, f"{name} received twice"
                        got[name] = content
                return got
            folder = running.root / "cloudpay"
            return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

        def history(self):
            log = DeliveryLog(dag_env.state_url)
            try:
                return log.history()
            finally:
                log.dispose()

        def set_status(self, status: str) -> None:
            log = DeliveryLog(dag_env.state_url)
            try:
                with log.engine.begin() as conn:
                    conn.execute(update(deliveries).values(status=status))
            finally:
                log.dispose()

        def expected(self, day: date, guids: list[str]) -> bytes:
            client = ic_sim.client()
            listed = client.list_payments(datetime(2000, 1, 1), datetime(2100, 1, 1))
            chosen = [p for p in listed if p.payment_guid in guids]
            assert len(chosen) == len(guids)
            return build_export(chosen, bid=ic_sim.bid, day=day, tz=NY).content

    return World()


def _name(world, day: date) -> str:
    return f"{world.bid}_{day:%Y%m%d}_CLOUDPAY.CSV"


def _state(dag_run) -> str:
    return str(dag_run.state)


def _refs(content: bytes) -> list[str]:
    rows = content.decode().split("\r\n")[1:-2]
    return [r.rsplit(",", 1)[1] for r in rows]


@pytest.mark.parametrize("world", ["ftps", "sftp", "email", "vsftpd", "sshd"], indirect=True)
def test_delivers_the_days_file_byte_exact(world):
    day = date(2026, 4, 14)
    p1 = world.pay(datetime(2026, 4, 14, 9, 15, tzinfo=NY), "120.00", convenience_fee="2.95", payment_type="PayPal",
                   account="7001-CV-202604011200", invoice="INV-1", cashier_name="Lee, Ann")
    p2 = world.pay(datetime(2026, 4, 14, 16, 5, 30, tzinfo=NY), "45.10", payment_type="Cash", account="7002")
    world.pay(datetime(2026, 4, 14, 12, 0, tzinfo=NY), "9.99", channel="Web")  # not CloudPay: not in the file
    world.pay(datetime(2026, 4, 15, 0, 1, tzinfo=NY), "1.00")  # the next business day
    assert _state(world.run(day)) == "success"
    files = world.files()
    assert list(files) == [_name(world, day)]
    content = files[_name(world, day)]
    assert content == world.expected(day, [p1, p2])
    assert content.startswith(b"AccountNumber,")
    assert b'7001,INV-1,2026-04-14 09:15:00,120.00,2.95,CC,"Lee, Ann"' in content
    assert content.endswith(b"TRAILER,2,165.10,2.95\r\n")
    assert [(h.day, h.status, h.records, h.method) for h in world.history()] == [("2026-04-14", "delivered", 2,
                                                                                   world.method)]
    if world.method == "email":
        (mail,) = world.server.received
        assert sorted(mail.rcpt_tos) == ["ap@biller.test", "it@biller.test"]
        assert mail.mail_from == "payments@icbridge.test" and mail.login == world.server.login[0]
        assert _name(world, day) in mail.message["Subject"]


@pytest.mark.parametrize("world", ["sftp", "email"], indirect=True)
def test_rerun_does_not_deliver_again_unless_redeliver(world):
    day = date(2026, 4, 20)
    world.pay(datetime(2026, 4, 20, 10, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    first = world.files()
    assert _state(world.run(day, next_morning=True)) == "success"  # a re-run of the same day
    assert world.files() == first
    assert [h.status for h in world.history()] == ["delivered"]
    if world.method == "email":
        assert len(world.server.received) == 1
    assert _state(world.run(day, next_morning=True, redeliver=True)) == "success"
    assert [h.status for h in world.history()] == ["delivered", "delivered"]
    assert world.history()[0].sha256 == world.history()[1].sha256
    if world.method == "email":
        assert len(world.server.received) == 2
        assert world.server.received[1].attachments() == world.server.received[0].attachments()
    else:
        assert world.files() == first


@pytest.mark.parametrize(
    ("day", "inside", "outside"),
    [
        (  # spring forward: 02:00-03:00 does not exist, the day has 23 hours
            date(2026, 3, 8),
            [datetime(2026, 3, 7, 23, 59, 0, 1), datetime(2026, 3, 8, 1, 59, 59), datetime(2026, 3, 8, 3, 0),
             datetime(2026, 3, 8, 23, 59)],
            [datetime(2026, 3, 7, 23, 59), datetime(2026, 3, 8, 23, 59, 0, 1)],
        ),
        (  # fall back: 01:00-02:00 happens twice, the day has 25 hours
            date(2026, 11, 1),
            [datetime(2026, 10, 31, 23, 59, 1), datetime(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 1, 30, fold=1),
             datetime(2026, 11, 1, 23, 59)],
            [datetime(2026, 10, 31, 23, 59), datetime(2026, 11, 2, 0, 0)],
        ),
    ],
)
def test_dst_days_lose_and_double_nothing_over_a_three_day_backfill(world, day, inside, outside):
    guid_at = {world.pay(t.replace(tzinfo=NY)): t for t in inside + outside}
    days = [day - timedelta(days=1), day, day + timedelta(days=1)]
    for d in days:  # a 3-day backfill
        assert _state(world.run(d)) == "success"
    files = world.files()
    assert sorted(files) == sorted(_name(world, d) for d in days)
    placed = {ref: name for name, content in files.items() for ref in _refs(content)}
    assert sorted(placed) == sorted(guid_at), "every payment in exactly one file"
    assert sum(len(_refs(c)) for c in files.values()) == len(guid_at)
    for guid, t in guid_at.items():
        assert (placed[guid] == _name(world, day)) == (t in inside), (t, placed[guid])
    day_rows = files[_name(world, day)].decode().split("\r\n")[1:-2]
    if day.month == 11:  # the repeated hour: both 01:30s, EDT first (true order)
        thirty = [r for r in day_rows if "2026-11-01 01:30:00" in r]
        order = [g for g, t in guid_at.items() if t.hour == 1 and t.minute == 30]
        by_fold = sorted(order, key=lambda g: guid_at[g].fold)
        assert [r.rsplit(",", 1)[1] for r in thirty] == by_fold
    assert [h.day for h in world.history()] == [d.isoformat() for d in days]
    for d in days:  # backfilled again: nothing new delivered
        assert _state(world.run(d, next_morning=True)) == "success"
    assert len(world.history()) == 3 and world.files() == files


@pytest.mark.parametrize("world", ["ftps", "sftp"], indirect=True)
def test_upload_dropped_midway_leaves_no_final_file_and_retry_completes(world):
    day = date(2026, 5, 2)
    guids = [world.pay(datetime(2026, 5, 2, 9, m, tzinfo=NY), cashier_name="x" * 200) for m in range(20)]
    world.server.server.drop_next_upload(after_bytes=1000)
    assert _state(world.run(day)) == "failed"
    assert _name(world, day) not in world.files(), "half a file under the final name"
    assert [h.status for h in world.history()] == ["failed"]
    assert _state(world.run(day, next_morning=True)) == "success"  # the retry
    assert world.files() == {_name(world, day): world.expected(day, guids)}
    assert [h.status for h in world.history()] == ["failed", "delivered"]
    assert not list((world.server.root / "cloudpay").glob("*.part"))


@pytest.mark.parametrize("world", ["sftp"], indirect=True)
def test_crash_after_upload_before_record_is_confirmed_on_the_server_not_resent(world):
    day = date(2026, 5, 3)
    world.pay(datetime(2026, 5, 3, 11, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    final = world.server.root / "cloudpay" / _name(world, day)
    stamp = final.stat().st_mtime_ns
    world.set_status("sending")  # as if the worker died between the rename and the record
    assert _state(world.run(day, next_morning=True)) == "success"
    (row,) = world.history()
    assert row.status == "delivered" and "confirmed on the server" in row.message
    assert final.stat().st_mtime_ns == stamp, "not uploaded again"
    world.set_status("sending")
    final.unlink()  # ... and this time the rename never happened
    assert _state(world.run(day, next_morning=True)) == "success"
    assert [h.status for h in world.history()] == ["failed", "delivered"] and final.exists()


@pytest.mark.parametrize("world", ["email"], indirect=True)
def test_email_in_doubt_is_not_resent_blindly(world, caplog):
    day = date(2026, 5, 4)
    world.pay(datetime(2026, 5, 4, 11, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    world.set_status("sending")  # the answer to DATA never came back
    assert _state(world.run(day, next_morning=True)) == "failed"
    assert "may or may not have arrived" in caplog.text
    assert len(world.server.received) == 1
    assert _state(world.run(day, next_morning=True, redeliver=True)) == "success"
    assert len(world.server.received) == 2


@pytest.mark.parametrize("world", ["email"], indirect=True)
def test_email_in_doubt_settled_as_delivered_by_the_cli_is_not_sent_again(world, caplog):
    from icbridge.cli import main as cli

    day = date(2026, 5, 5)
    world.pay(datetime(2026, 5, 5, 11, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    world.set_status("sending")
    assert _state(world.run(day, next_morning=True)) == "failed"
    command = f"python -m icbridge deliveries settle --biller t_logis --day {day} --outcome delivered --reason"
    assert command in caplog.text  # the failure says how to settle it
    assert cli([*command.split()[3:], "the biller confirmed it arrived"]) == 0  # ICBRIDGE_STATE_DB_URL
    assert _state(world.run(day, next_morning=True)) == "success"
    assert len(world.server.received) == 1  # the biller had it: not sent again
    assert [d.status for d in world.history()] == ["delivered"]
    assert world.history()[0].message.startswith("settled by ops as delivered by ")  # who settled it


@pytest.mark.parametrize("world", ["email"], indirect=True)
def test_smtp_refusal_is_not_delivered_and_a_retry_sends(world):
    day = date(2026, 5, 5)
    world.pay(datetime(2026, 5, 5, 11, tzinfo=NY))
    world.server.refuse_next()
    assert _state(world.run(day)) == "failed"
    assert [h.status for h in world.history()] == ["failed"] and world.server.received == []
    assert _state(world.run(day, next_morning=True)) == "success"
    assert len(world.server.received) == 1


@pytest.mark.parametrize("world", ["sftp", "email"], indirect=True)
def test_day_without_payments_gets_header_and_trailer_unless_turned_off(world):
    day = date(2026, 6, 1)
    assert _state(world.run(day)) == "success"
    assert world.files() == {_name(world, day): world.expected(day, [])}
    assert world.files()[_name(world, day)].endswith(b"\r\nTRAILER,0,0.00,0.00\r\n")
    world.configure(empty_day_file=False)
    assert _state(world.run(date(2026, 6, 2))) == "success"
    assert list(world.files()) == [_name(world, day)]
    assert len(world.history()) == 1


def test_unknown_payment_type_fails_naming_the_payment_and_sends_nothing(world, caplog):
    day = date(2026, 6, 3)
    guid = world.pay(datetime(2026, 6, 3, 11, tzinfo=NY), payment_type="GiftCard")
    assert _state(world.run(day)) == "failed"
    assert f"payment {guid}: PaymentType 'GiftCard'" in caplog.text
    assert world.files() == {} and world.history() == []
    world.configure(payment_types={"GiftCard": "CASH"})
    assert _state(world.run(day, next_morning=True)) == "success"
    assert b",CASH," in world.files()[_name(world, day)]


def test_payments_changed_after_delivery_fail_loudly_until_redelivered(world, caplog):
    day = date(2026, 6, 4)
    world.pay(datetime(2026, 6, 4, 11, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    late = world.pay(datetime(2026, 6, 4, 12, tzinfo=NY), "3.00")  # IC lists one more for the day
    assert _state(world.run(day, next_morning=True)) == "failed"
    assert "now give other bytes" in caplog.text
    assert late.encode() not in world.files()[_name(world, day)]
    assert _state(world.run(day, next_morning=True, redeliver=True)) == "success"
    assert late.encode() in world.files()[_name(world, day)]


def test_decimal_amounts_round_trip(world):
    day = date(2026, 6, 5)
    world.pay(datetime(2026, 6, 5, 11, tzinfo=NY), "0.10", convenience_fee=Decimal("0.20"))
    world.pay(datetime(2026, 6, 5, 12, tzinfo=NY), "0.20", convenience_fee="0.10")
    assert _state(world.run(day)) == "success"
    assert world.files()[_name(world, day)].endswith(b"TRAILER,2,0.30,0.30\r\n")


def test_dag_shape(world):
    dag = world.dag
    assert dag.dag_id == "t_logis__payment_export"
    assert "flow:payment_export" in dag.tags and "cis:logis" in dag.tags
    assert dag.params["redeliver"] is False
    task = dag.get_task("export_and_deliver")
    assert task.owner == "data-engineering" and task.retry_exponential_backoff
    assert "redeliver" in task.template_fields
    assert "D-1 23:59 < PaymentDate" in dag.doc_md
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(dag.timetable)
    after = timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(dag.start_date, None, True)
    )
    assert after.logical_date.astimezone(NY).strftime("%Y-%m-%d %H:%M") == "2026-01-01 23:59"
    spring = timetable.next_dagrun_info(
        last_automated_data_interval=timetable.infer_manual_data_interval(run_after=closure(date(2026, 3, 7), NY)),
        restriction=TimeRestriction(dag.start_date, None, True),
    )
    assert spring.logical_date == closure(date(2026, 3, 8), NY)  # 23 hours later, still 23:59 local


def test_biller_config_errors_name_the_field(tmp_path: Path):
    from icbridge.config.biller import BillerConfigError, load_biller

    path = tmp_path / "x_logis.yaml"
    path.write_text(yaml.safe_dump({"biller_id": "x_logis", "bid": "9", "name": "X", "cis": "logis",
                                    "ic_conn_id": "x", "payment_export": {"delivery": "email", "conn_id": "m"}}))
    with pytest.raises(BillerConfigError, match="payment_export: Value error, delivery 'email' needs email_to"):
        load_biller(path)


def test_demo_stack_delivers_the_demo_logis_billers(tmp_path, monkeypatch, dag_env):
    """SimStack + the demo Logis billers: SFTP and email delivery with the stack's connections."""
    import shutil

    from icbridge.config.biller import load_biller
    from icbridge.dagbuild import payment_export
    from icbsim.demo_payments import seed_logis_payments
    from icbsim.stack import SimStack
    from tests.support.services import REPO

    billers = dag_env.billers
    for name in ("demo_logis.yaml", "demo_logis_mail.yaml"):
        shutil.copy(REPO / "include" / "billers" / name, billers / name)
    with SimStack(tmp_path / "sim", billers_dir=billers) as stack:
        day = date(2026, 3, 8)
        added = seed_logis_payments(stack, days=1, today=day + timedelta(days=1))
        assert added["demo_logis"] > 0 and added["demo_logis_mail"] > 0
        assert seed_logis_payments(stack, days=1, today=day + timedelta(days=1)) == {"demo_logis": 0,
                                                                                    "demo_logis_mail": 0}
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        for biller_id in ("demo_logis", "demo_logis_mail"):
            biller = load_biller(billers / f"{biller_id}.yaml")
            dag = payment_export.build(biller, billers)
            run = dag.test(logical_date=closure(day, biller.tz))
            assert str(run.state) == "success", biller_id
        sftp_file = stack.access("demo_logis").inbox / "126_20260308_CLOUDPAY.CSV"
        assert sftp_file.read_bytes().count(b"\r\n") == added["demo_logis"] + 2
        assert b"-CV-" not in sftp_file.read_bytes()
        (mail,) = stack.smtp.received
        attachment = mail.attachments()["127_20260308_CLOUDPAY.CSV"]
        assert attachment.count(b"\r\n") == added["demo_logis_mail"] + 2
        assert mail.rcpt_tos == ("utility-billing@borough.invalid",)


@pytest.mark.parametrize("world", ["sftp"], indirect=True)
def test_no_run_inherits_another_runs_params(world):
    """A run with redeliver=true, then a new run without: the new one does not redeliver. The
    params are read from each run's own context (never kept on the operator). What the earlier
    report saw was dag.test() itself: called again with the *same* logical date it reuses that
    DagRun — its conf included — as clearing a run does (a cleared run keeps its own params)."""
    day = date(2026, 4, 21)
    world.pay(datetime(2026, 4, 21, 10, tzinfo=NY))
    assert _state(world.run(day)) == "success"
    assert _state(world.run(day, next_morning=True, redeliver=True)) == "success"
    assert [h.status for h in world.history()] == ["delivered", "delivered"]
    later = closure(day, NY) + timedelta(hours=9)  # a new manual run of the same day, no conf
    assert _state(world.dag.test(logical_date=later)) == "success"
    assert [(h.day, h.status) for h in world.history()] == [("2026-04-21", "delivered")] * 2  # no third
    assert world.dag.params["redeliver"] is False and world.dag.task_dict["export_and_deliver"].redeliver is None


@pytest.mark.parametrize("world", ["sftp", "email"], indirect=True)
def test_days_missed_in_downtime_are_exported_oldest_first_each_once(world):
    last = date(2026, 11, 2)
    guids = {d: world.pay(datetime(2026, 11, d, 12, tzinfo=NY), f"{d}.00") for d in (2, 3, 4, 5)}
    assert _state(world.run(last)) == "success"
    # down on 11-03 and 11-04 (catchup off: no runs); back up for the 11-05 run
    assert _state(world.run(date(2026, 11, 5))) == "success"
    days = [date(2026, 11, d) for d in (2, 3, 4, 5)]
    assert [h.day for h in world.history()] == [d.isoformat() for d in days]  # oldest first, once each
    files = world.files()
    assert sorted(files) == sorted(_name(world, d) for d in days)
    for d in days:
        assert _refs(files[_name(world, d)]) == [guids[d.day]]
    for d in days:  # a backfill of the same span: nothing sent again
        assert _state(world.run(d, next_morning=True)) == "success"
    assert len(world.history()) == 4 and world.files() == files


def test_a_gap_longer_than_the_bound_fails_naming_the_backfill(world, caplog):
    world.configure(max_catchup_days=2)
    assert _state(world.run(date(2026, 7, 1))) == "success"
    assert _state(world.run(date(2026, 7, 5))) == "failed"  # 07-02 .. 07-05 missing: 4 > 2
    assert ("airflow backfill create --dag-id t_logis__payment_export --from-date 2026-07-02 "
            "--to-date 2026-07-04") in caplog.text
    assert [h.day for h in world.history()] == ["2026-07-01"]  # nothing exported by the failed run
    for d in (2, 3, 4):  # ops run the backfill it names, then clear the failed run
        assert _state(world.run(date(2026, 7, d))) == "success"
    assert _state(world.run(date(2026, 7, 5), next_morning=True)) == "success"
    assert [h.day for h in world.history()] == [f"2026-07-0{d}" for d in range(1, 6)]


class _Watched:
    """A RemoteFolder of the real server whose upload can be held (``hold``: waits for ``go``) and
    whose renames onto a final name are counted (in ``renames``, shared by both runs)."""

    def __init__(self, folder, renames: list[str], hold: threading.Event | None, go: threading.Event | None):
        self._folder, self._renames, self._hold, self._go = folder, renames, hold, go

    def __getattr__(self, name):
        return getattr(self._folder, name)

    def upload(self, local, remote):
        if self._hold is not None:
            self._hold.set()
            assert self._go.wait(60), "the other run never tried"
        return self._folder.upload(local, remote)

    def rename(self, source, target):
        self._renames.append(target)
        return self._folder.rename(source, target)


@pytest.mark.parametrize("world", ["vsftpd", "sshd"], indirect=True)
def test_two_runs_of_one_day_at_once_deliver_it_once(world, ic_sim, dag_env):
    """Issue 27 item 1, against real vsftpd and OpenSSH: a backfill run and a triggered re-run of
    one day at once. The backfill holds the day and is mid-upload when the re-run starts: the
    re-run sends nothing and names the backfill; exactly one rename onto the final name; the
    ledger's sha256 is the file's; a later retry of the re-run finds the day delivered."""
    from icbridge.flows.payment_export import DayTaken, deliver, export_day
    from icbridge.operators.payment_export import destination_for
    from icbridge.state.executions import Execution

    day = date(2026, 12, 5)
    for minute in range(30):
        world.pay(datetime(2026, 12, 5, 9, minute, tzinfo=NY), amount=f"{minute + 1}.25")
    export = export_day(ic_sim.client().list_payments, bid=world.bid, day=day, tz=NY)
    renames: list[str] = []
    uploading, tried = threading.Event(), threading.Event()
    log = DeliveryLog(dag_env.state_url)
    results: dict[str, object] = {}

    def destination(hold: threading.Event | None):
        dest = destination_for(world.biller, export.name, day.isoformat(), export.payments)
        opener = dest._open
        dest._open = lambda: _Watched(opener(), renames, hold, tried if hold is not None else None)
        return dest

    def run(name: str, hold: threading.Event | None) -> None:
        with Execution(log.engine, dag_id="t_logis__payment_export", task_id="export_and_deliver", run_id=name,
                       try_number=1) as execution:
            try:
                with log.claim_day("t_logis", "payment_export", day, execution.token):
                    results[name] = deliver(export, destination(hold), log, biller_id="t_logis",
                                            run_id=execution.token).status
            except DayTaken as exc:
                results[name] = exc

    try:
        backfill = threading.Thread(target=run, args=("backfill__2026-12-05T23:59:00-05:00", uploading))
        backfill.start()
        assert uploading.wait(30)
        run("manual__2026-12-06T08:00:00-05:00", None)  # the re-run, while the backfill uploads
        tried.set()
        backfill.join(60)
        taken = results["manual__2026-12-06T08:00:00-05:00"]
        assert isinstance(taken, DayTaken) and "run backfill__2026-12-05T23:59:00-05:00" in str(taken)
        assert results["backfill__2026-12-05T23:59:00-05:00"] == "delivered"
        run("manual__2026-12-06T08:00:00-05:00", None)  # its retry
        assert results["manual__2026-12-06T08:00:00-05:00"] == "already_delivered"
        final = f"/cloudpay/{export.name}"
        assert renames == [final], renames  # one rename onto the final name, by the backfill
        on_server = world.files()
        assert list(on_server) == [export.name]  # no .part left behind
        [attempt] = log.history()
        assert attempt.status == "delivered"
        assert attempt.sha256 == hashlib.sha256(on_server[export.name]).hexdigest() == export.sha256
    finally:
        log.dispose()


def test_a_failed_attempt_never_hides_a_delivered_one(tmp_path):
    """Attempts [delivered, failed] with the same bytes (a run's retry after another's): the day
    is delivered, nothing is sent again."""
    from icbridge.flows.payment_export import deliver
    from icbridge.layouts.logis import build_export

    export = build_export([], bid="123", day=date(2026, 12, 5), tz=NY)
    log = DeliveryLog(f"sqlite:///{tmp_path / 'state.db'}")
    fields = dict(biller_id="b", flow="payment_export", day=export.day, file_name=export.name, sha256=export.sha256,
                  size=export.size, records=0, method="sftp", destination="sftp://x/")
    first = log.begin(run_id="A", **fields)
    assert log.finish(first, "delivered", owner="A")
    second = log.begin(run_id="B", **fields)
    assert log.finish(second, "failed", "interrupted", owner="B")
    assert not log.finish(second, "delivered", owner="A")  # only the owner of a sending row finishes it

    class Never:
        method, description = "sftp", "sftp://x/"

        def send(self, name, content, tag=""):
            raise AssertionError("sent again")

        def fetch(self, name):
            raise AssertionError("looked again")

    assert deliver(export, Never(), log, biller_id="b", run_id="C").status == "already_delivered"
    log.dispose()


class _Recorder:
    """A destination that keeps what it was sent (the core's view of one; the real servers are
    tested above). ``before_point_of_no_return`` runs where a real one would rename."""

    method, description = "sftp", "sftp://x/"

    def __init__(self, before_point_of_no_return=None):
        self.sent: list[str] = []
        self.hook = before_point_of_no_return

    def send(self, name, content, tag="", still_ours=None):
        if self.hook:
            self.hook()
        if still_ours is not None and not still_ours():
            from icbridge.flows.payment_export import NotDelivered

            raise NotDelivered("no longer ours")
        self.sent.append(name)

    def fetch(self, name):
        return None


def test_a_holder_that_lost_the_day_never_reaches_the_point_of_no_return(tmp_path, monkeypatch):
    """Review finding: run A's lease lapsed (a slow state DB), run B took the day over; A must
    not deliver it too. A asks right before the rename whether it still holds the day."""
    from icbridge.flows.payment_export import NotDelivered, deliver
    from icbridge.state.executions import Execution

    monkeypatch.setenv("ICBRIDGE_LEASE_SECONDS", "0.5")
    export = build_export([], bid="123", day=date(2026, 12, 5), tz=NY)
    log = DeliveryLog(f"sqlite:///{tmp_path / 'state.db'}")
    taken: list[str] = []

    def b_takes_over() -> None:  # meanwhile, A's lease has lapsed: B takes the day and delivers it
        time.sleep(0.7)
        with Execution(log.engine, dag_id="d", task_id="t", run_id="B", try_number=1) as b, \
                log.claim_day("b", "payment_export", export.day, b.token):
            taken.append(deliver(export, b_dest, log, biller_id="b", run_id=b.token).status)

    b_dest = _Recorder()
    a_dest = _Recorder(before_point_of_no_return=b_takes_over)
    with Execution(log.engine, dag_id="d", task_id="t", run_id="A", try_number=1, heartbeat_seconds=60) as a, \
            log.claim_day("b", "payment_export", export.day, a.token), pytest.raises(NotDelivered):
        deliver(export, a_dest, log, biller_id="b", run_id=a.token)
    assert taken == ["delivered"] and b_dest.sent == [export.name] and a_dest.sent == []
    log.dispose()


def test_a_redelivery_supersedes_an_attempt_left_sending(tmp_path):
    """Review finding: after `redeliver`, an earlier attempt left `sending` by a gone run must not
    make every later run stop as in doubt."""
    from icbridge.flows.payment_export import deliver

    export = build_export([], bid="123", day=date(2026, 12, 5), tz=NY)
    log = DeliveryLog(f"sqlite:///{tmp_path / 'state.db'}")
    log.begin(biller_id="b", flow="payment_export", day=export.day, file_name=export.name, sha256=export.sha256,
              size=export.size, records=0, method="sftp", destination="sftp://x/", run_id="gone#try1#x")
    dest = _Recorder()
    with log.claim_day("b", "payment_export", export.day, "R#try1#r"):  # deliver's caller holds the day
        assert deliver(export, dest, log, biller_id="b", run_id="R#try1#r", redeliver=True).status == "delivered"
    first, second = log.history()
    assert first.status == "failed" and "superseded by a redelivery" in first.message
    assert second.status == "delivered" and "redelivery" not in (second.message or "")
    with log.claim_day("b", "payment_export", export.day, "S#try1#s"):
        assert deliver(export, dest, log, biller_id="b", run_id="S#try1#s").status == "already_delivered"
    assert dest.sent == [export.name]
    log.dispose()
