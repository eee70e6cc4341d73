"""The command line, run as a user runs it: `python -m icbridge ...` in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from icbridge.layouts.bif import read_bif
from icbsim.aus_files import make_rows, render

REPO = Path(__file__).resolve().parents[3]
BILLER = REPO / "include" / "billers" / "demo_aus.yaml"
SAMPLE = Path("/work/shared/specs/samples/123_20261101_UB.TXT")
GUID = "11111111-2222-3333-4444-555555555555"
NO_GUID = "00000000-0000-0000-0000-000000000000"


def icbridge(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if k != "ICBRIDGE_BILLER_GUID"}
    return subprocess.run(
        [sys.executable, "-m", "icbridge", *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def aus_file(folder: Path, name: str, rows: list[dict], trailer: str | None = None) -> Path:
    path = folder / name
    path.write_bytes(render(rows, trailer).encode("cp1252"))
    return path


# --- map-aus -----------------------------------------------------------------------------


def test_map_aus_sample(tmp_path):
    out = tmp_path / "out"
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", out, "--biller-guid", GUID, "--date", "2026-11-01")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == ["123_20261101_UB.BIF", "rejects.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["bills_read"], summary["accepted"], summary["rejected"]) == (20, 20, 0)
    assert [(b["name"], b["invoices"], b["total"]) for b in summary["bifs"]] == [("123_20261101_UB.BIF", 20, "8285.69")]
    assert summary["warnings"] == {"Email invalid, left blank": 3}
    assert (out / "rejects.csv").read_text().splitlines() == ["lines,account,bill_number,reason"]
    fh = read_bif((out / "123_20261101_UB.BIF").read_bytes()).header
    assert (fh["BillerGuid"], fh["FileCreationDate"], fh["InvoiceCount"]) == (GUID, "11/01/2026", "20")
    assert "20 bills read, 20 accepted, 0 rejected" in r.stdout
    assert "20 invoices, total 8285.69" in r.stdout
    assert "Email invalid, left blank: 3" in r.stdout


def test_map_aus_with_rejected_bills(tmp_path):
    rows = make_rows(40, seed=3)
    bad = [i for i, row in enumerate(rows) if row["AccountNumber"] == rows[-1]["AccountNumber"]]
    for i in bad:
        rows[i]["CustomerName"] = ""  # the last bill: missing required value
    first_bill = [i for i, row in enumerate(rows) if row["BillNumber"] == rows[0]["BillNumber"]]
    for i in first_bill:
        rows[i]["BillDate"] = "02/30/2026"  # the first bill: not a date
    src = aus_file(tmp_path, "123_20261102_UB.TXT", rows)
    out = tmp_path / "out"
    r = icbridge("map-aus", src, "--biller", BILLER, "--out", out, "--biller-guid", GUID, "--date", "2026-11-02")
    assert r.returncode == 0, r.stderr
    rejects = list(csv.DictReader(io.StringIO((out / "rejects.csv").read_text())))
    assert [list(x) for x in rejects] == [["lines", "account", "bill_number", "reason"]] * 2
    assert rejects[0] == {
        "lines": " ".join(str(i + 2) for i in first_bill),
        "account": rows[0]["AccountNumber"],
        "bill_number": rows[0]["BillNumber"],
        "reason": "BillDate '02/30/2026' is not a date MM/DD/YYYY",
    }
    assert rejects[1]["lines"] == " ".join(str(i + 2) for i in bad)
    assert rejects[1]["reason"] == "missing required value CustomerName"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["bills_read"], summary["accepted"], summary["rejected"]) == (40, 38, 2)
    assert summary["bifs"][0]["invoices"] == 38
    assert "40 bills read, 38 accepted, 2 rejected" in r.stdout


def test_biller_guid_from_env(tmp_path):
    out = tmp_path / "out"
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", out, env={"ICBRIDGE_BILLER_GUID": GUID})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert read_bif((out / "123_20261101_UB.BIF").read_bytes()).header["BillerGuid"] == GUID


def test_no_biller_guid_writes_zeros_and_warns(tmp_path):
    out = tmp_path / "out"
    before = datetime.now(ZoneInfo("America/New_York")).date()
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", out)
    after = datetime.now(ZoneInfo("America/New_York")).date()
    assert r.returncode == 0, r.stderr
    assert "inspection, not upload" in r.stderr and "ICBRIDGE_BILLER_GUID" in r.stderr
    fh = read_bif((out / "123_20261101_UB.BIF").read_bytes()).header
    assert fh["BillerGuid"] == NO_GUID
    # default FileCreationDate: today in the biller's time zone
    assert fh["FileCreationDate"] in {d.strftime("%m/%d/%Y") for d in (before, after)}


def test_bad_biller_guid(tmp_path):
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", tmp_path / "out", "--biller-guid", "not-a-guid")
    assert r.returncode == 2
    assert "not-a-guid" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_date_option(tmp_path):
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", tmp_path, "--date", "11/01/2026")
    assert r.returncode == 2
    assert "YYYY-MM-DD" in r.stderr


@pytest.mark.parametrize(
    ("name", "mutate", "line", "rule"),
    [
        ("123_20261101_UB.TXT", lambda text: text.replace("TRAILER|48|", "TRAILER|47|"), 50, "trailer"),
        ("123_20261101_UB.TXT", lambda text: text.rsplit("TRAILER", 1)[0], 49, "trailer"),
        ("124_20261101_UB.TXT", lambda text: text.replace("\n123|", "\n124|"), None, "BID"),
        ("123_20261101_UB.TXT", lambda text: text.replace("\n123|100005-60", "\n321|100005-60", 1), 14, "BID"),
        ("123_20261101_UB.TXT", lambda text: text.replace("|DueDate|", "|Due|"), 1, "missing required column"),
    ],
)
def test_file_level_rejection_writes_nothing(tmp_path, name, mutate, line, rule):
    out = tmp_path / "out"
    # a previous, successful run left its outputs in the folder
    done = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", out, "--biller-guid", GUID)
    assert done.returncode == 0
    (out / "123_20261101_UB.BIF").rename(out / "123_20261031_UB.BIF")
    before = snapshot(out)

    src = tmp_path / name
    src.write_bytes(mutate(SAMPLE.read_bytes().decode("cp1252")).encode("cp1252"))
    r = icbridge("map-aus", src, "--biller", BILLER, "--out", out, "--biller-guid", GUID)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{name} line {line}:" if line else f"{name}:")
    assert lines[0].endswith(f"(rule: {rule})")
    assert snapshot(out) == before  # no BIF, no rejects.csv/summary.json of this run, nothing removed


def test_undecodable_byte_names_the_line(tmp_path):
    src = tmp_path / SAMPLE.name
    src.write_bytes(SAMPLE.read_bytes().replace(b"Portsmouth", b"Ports\x81outh", 1))
    r = icbridge("map-aus", src, "--biller", BILLER, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"{SAMPLE.name} line 2: byte 0x81 is not valid cp1252 (rule: encoding)"]
    assert snapshot(tmp_path / "out") == {}


def test_missing_input(tmp_path):
    r = icbridge("map-aus", tmp_path / "123_20261101_UB.TXT", "--biller", BILLER, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert "123_20261101_UB.TXT" in r.stderr and "cannot read" in r.stderr


def test_no_bills_is_a_success_without_bif(tmp_path):
    src = aus_file(tmp_path, "123_20261103_UB.TXT", [], trailer="TRAILER|0|0|0.00")
    out = tmp_path / "out"
    r = icbridge("map-aus", src, "--biller", BILLER, "--out", out, "--biller-guid", GUID)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["rejects.csv", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["bifs"] == []
    assert "no BIF written" in r.stdout


# --- check-bif ---------------------------------------------------------------------------


@pytest.fixture
def bif(tmp_path) -> Path:
    out = tmp_path / "out"
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER, "--out", out, "--biller-guid", GUID)
    assert r.returncode == 0, r.stderr
    return out / "123_20261101_UB.BIF"


def test_check_bif_pass(bif):
    r = icbridge("check-bif", bif)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "OK 123_20261101_UB.BIF (20 invoices, total 8285.69)"


def test_check_bif_fail(bif, tmp_path):
    broken = tmp_path / "broken.BIF"
    data = bif.read_bytes()
    broken.write_bytes(data.replace(b",20,8285.69\r\n", b",21,8285.69\r\n", 1).replace(b"\r\n", b"\n"))
    r = icbridge("check-bif", bif, broken)
    assert r.returncode == 1
    assert "OK 123_20261101_UB.BIF (20 invoices, total 8285.69)" in r.stdout
    assert "FAIL broken.BIF" in r.stdout
    assert "every line must end in CRLF (rule: framing)" in r.stdout
    assert "FH InvoiceCount 21 but the file has 20 IH rows (rule: FH figures)" in r.stdout


def test_check_bif_missing_file(tmp_path):
    r = icbridge("check-bif", tmp_path / "nope.BIF")
    assert r.returncode == 1
    assert "nope.BIF" in r.stdout and "cannot read" in r.stdout


# --- biller file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            ("invoice_format_guid: 5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F", "invoice_format_guid: nope"),
            "invoices.invoice_format_guid",
        ),
        (("multiple_meters: true", "multiple_meter: true"), "invoices.multiple_meter"),
        (('bid: "123"', 'bid: "12x"'), "bid"),
        (("timezone: America/New_York", "timezone: Mars/Olympus"), "timezone"),
        (("biller_id: demo_aus", "biller_id: other"), "biller_id"),
    ],
)
def test_broken_biller_file(tmp_path, change, field):
    text = BILLER.read_text()
    assert change[0] in text
    broken = tmp_path / "demo_aus.yaml"
    broken.write_text(text.replace(change[0], change[1]))
    out = tmp_path / "out"
    r = icbridge("map-aus", SAMPLE, "--biller", broken, "--out", out)
    assert r.returncode == 2
    assert re.search(rf"{re.escape(str(broken))}:\d+:\d+: {re.escape(field)}:", r.stderr), r.stderr  # line:column
    assert not out.exists()


def test_biller_file_not_yaml(tmp_path):
    broken = tmp_path / "demo_aus.yaml"
    broken.write_text("biller_id: [demo\n")
    r = icbridge("map-aus", SAMPLE, "--biller", broken, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert str(broken) in r.stderr and "not valid YAML" in r.stderr


def test_biller_file_missing(tmp_path):
    r = icbridge("map-aus", SAMPLE, "--biller", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert r.returncode == 2
    assert "nope.yaml" in r.stderr


def test_usage_errors(tmp_path):
    assert icbridge().returncode == 2
    r = icbridge("map-aus", SAMPLE, "--biller", BILLER)
    assert r.returncode == 2 and "--out" in r.stderr
    help_text = icbridge("map-aus", "--help")
    assert help_text.returncode == 0 and "--biller-guid" in help_text.stdout


def test_ledger_settle_and_show(tmp_path):
    from icbridge.state.db import Ledger

    url = f"sqlite:///{tmp_path / 'state.db'}"
    ledger = Ledger(url)
    record = ledger.begin_file("demo_aus", "123_20261101_UB.TXT", "a" * 64, 10, "run-1", force=False)
    ledger.mark_sending(record, 1, "123_20261101_UB.BIF", "b" * 64, 5, "10.00", "run-1")
    ledger.dispose()
    base = [sys.executable, "-m", "icbridge", "ledger", "--db", url]
    settle = [*base, "settle", "--biller", "demo_aus", "--file", "123_20261101_UB.TXT",
              "--part", "123_20261101_UB.BIF", "--as", "uploaded", "--reason", "IC portal shows the file"]
    first = subprocess.run(settle, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(settle, capture_output=True, text=True)
    assert again.returncode == 2 and "no in-doubt part" in again.stderr
    shown = subprocess.run([*base, "show"], capture_output=True, text=True)
    assert "123_20261101_UB.BIF  uploaded" in shown.stdout
    assert re.search(r"demo_aus  \S+ \S+ UTC \S+: 123_20261101_UB.TXT 123_20261101_UB.BIF sending -> uploaded "
                     r"\(IC portal shows the file\)", shown.stdout), shown.stdout  # who, when, from, to, why
    after = subprocess.run([sys.executable, "-m", "icbridge", "ledger", "show", "--db", url], capture_output=True,
                           text=True)  # --db after the action works as well
    assert after.returncode == 0 and "123_20261101_UB.BIF  uploaded" in after.stdout, after.stderr
    unexplained = subprocess.run(settle[:-2], capture_output=True, text=True)
    assert unexplained.returncode == 2 and "--reason" in unexplained.stderr


def test_deliveries_show_and_settle(tmp_path):
    from datetime import date

    from icbridge.state.deliveries import DeliveryLog

    url = f"sqlite:///{tmp_path / 'state.db'}"
    log = DeliveryLog(url)
    attempt = dict(biller_id="demo_logis_mail", flow="payment_export", file_name="456_20260308_CLOUDPAY.CSV",
                   sha256="c" * 64, size=120, records=2, method="email", destination="email://smtp to a***@b.test")
    done = log.begin(day=date(2026, 3, 7), run_id="run-1", **{**attempt, "file_name": "456_20260307_CLOUDPAY.CSV"})
    log.finish(done, "delivered", owner="run-1")
    log.begin(day=date(2026, 3, 8), run_id="run-2", **attempt)  # the answer to DATA never came
    log.dispose()
    base = ["deliveries", "--db", url]
    shown = icbridge(*base, "show", "--status", "sending")
    assert shown.returncode == 0, shown.stderr
    assert "456_20260308_CLOUDPAY.CSV  sending  by email" in shown.stdout and "20260307" not in shown.stdout
    settle = [*base, "settle", "--biller", "demo_logis_mail", "--day", "2026-03-08", "--outcome", "delivered",
              "--reason", "AP confirmed receipt"]
    first = icbridge(*settle)
    assert first.returncode == 0, first.stderr
    assert "as delivered" in first.stdout
    again = icbridge(*settle)
    assert again.returncode == 2 and "no in-doubt" in again.stderr
    day = icbridge(*base, "show", "--biller", "demo_logis_mail", "--day", "2026-03-08")
    assert "456_20260308_CLOUDPAY.CSV  delivered" in day.stdout and "settled by ops as delivered" in day.stdout
    assert "20260307" not in day.stdout
    assert "payment_export 2026-03-08 sending -> delivered (AP confirmed receipt)" in day.stdout
    bad = icbridge(*base, "settle", "--biller", "demo_logis_mail", "--day", "2026-03-08", "--outcome", "sent",
                   "--reason", "x")
    assert bad.returncode == 2 and "--outcome" in bad.stderr


def test_ledger_commands_find_the_state_db_as_the_dags_do_and_never_create_one(tmp_path):
    """The CLI reads the DB the DAGs write (same rule), says which, and a missing SQLite file
    is an error naming where it looked — not a fresh empty DB answering "no uploads recorded"."""
    from icbridge.state.db import Ledger

    home = tmp_path / "home"
    env = {"HOME": str(home), "AIRFLOW_HOME": "", "ICBRIDGE_HOME": "", "ICBRIDGE_STATE_DB_URL": ""}
    base = {k: v for k, v in os.environ.items() if k not in env}
    run = subprocess.run([sys.executable, "-m", "icbridge", "ledger", "show", "--biller", "demo_aus"],
                         capture_output=True, text=True, env={**base, "HOME": str(home)}, timeout=120)
    assert run.returncode == 2 and "no state DB at" in run.stderr and "ICBRIDGE_STATE_DB_URL" in run.stderr
    assert not home.exists()  # read-only: nothing created, not even ~/airflow

    url = f"sqlite:///{tmp_path / 'state.db'}"
    ledger = Ledger(url)
    record = ledger.begin_file("demo_aus", "123_20261101_UB.TXT", "a" * 64, 10, "run-1", force=False)
    ledger.mark_sending(record, 1, "123_20261101_UB.BIF", "b" * 64, 5, "10.00", "run-1")
    ledger.dispose()
    for extra in ({"ICBRIDGE_STATE_DB_URL": url}, {"AIRFLOW_CONN_ICBRIDGE_STATE": url, "AIRFLOW_HOME": str(tmp_path)}):
        run = subprocess.run([sys.executable, "-m", "icbridge", "ledger", "show", "--biller", "demo_aus"],
                             capture_output=True, text=True, env={**base, "HOME": str(home), **extra}, timeout=120)
        assert run.returncode == 0, run.stderr
        assert f"state DB: {url}" in run.stderr and "123_20261101_UB.BIF" in run.stdout


def test_one_rule_finds_the_state_db(monkeypatch, tmp_path):
    from icbridge.state.locate import locate_state_db

    monkeypatch.delenv("ICBRIDGE_STATE_DB_URL", raising=False)
    monkeypatch.setenv("ICBRIDGE_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("AIRFLOW_CONN_ICBRIDGE_STATE", raising=False)
    found = locate_state_db(ask_airflow=False)
    assert found.url == f"sqlite:///{tmp_path / 'h' / 'state.db'}" and "default" in found.source
    assert not (tmp_path / "h").exists()  # locating creates nothing
    monkeypatch.setenv("AIRFLOW_CONN_ICBRIDGE_STATE", "postgres://u@127.0.0.1:5432/test")
    assert locate_state_db().url == "postgresql://u@127.0.0.1:5432/test"
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", "sqlite:///x.db")
    assert locate_state_db().source == "ICBRIDGE_STATE_DB_URL"


def test_the_readme_map_and_check_commands_work_as_written(tmp_path):
    """The README's "Map and check files locally" block, run line by line as written (from a
    folder that has the checkout's .venv and include/), exits 0 and leaves a checked BIF."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Map and check files locally", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 3 and "sample-aus" in commands[0]
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("the README's commands use the checkout's .venv (scripts/setup.sh makes it)")
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "include").symlink_to(REPO / "include")
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (command, run.stderr)
    assert (tmp_path / "out" / "123_20261101_UB.BIF").exists()


def _documented_cli_commands() -> list[tuple[str, str]]:
    """Every complete ``python -m icbridge …`` command in README.md and docs/*.md (in code
    blocks or backticks), as (where, command)."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        candidates = re.findall(r"`([^`\n]*python -m icbridge [^`\n]*)`", text)
        candidates += [line for line in text.splitlines() if re.match(r"\s*(\S*/)?python -m icbridge ", line)]
        for raw in candidates:
            command = raw.split("python -m icbridge ", 1)[1].split("  #")[0].split(" >")[0].split(" ||")[0].strip()
            if "…" in command or "..." in command or command.endswith(("\\", "|")):
                continue  # an abbreviation, not a command to run
            found.append((doc.name, command))
    return found


def test_every_documented_cli_command_parses_as_written():
    """Each documented command names a real subcommand with real options (placeholders such as
    <biller_id> filled in; alternatives a|b: the first)."""
    import shlex

    from icbridge.cli import _parser

    commands = _documented_cli_commands()
    assert len(commands) >= 8
    for where, command in commands:
        filled = re.sub(r"<[^>]+>", "x", command).replace("YYYY-MM-DD", "2026-03-08")
        filled = re.sub(r"(\w+)\|[\w|]+", r"\1", filled)
        try:
            _parser().parse_args(shlex.split(filled))
        except SystemExit as exc:
            pytest.fail(f"{where}: `python -m icbridge {command}` does not parse ({exc})")
