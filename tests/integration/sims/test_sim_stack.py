"""SimStack: the demo's IC + FTPS + SFTP simulators for every biller, over real sockets.

Connections are handed to the real hooks through ``AIRFLOW_CONN_<ID>`` env vars (what the
demo gives Airflow), so these tests prove the demo's wiring, not a mock of it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.transfer import open_remote_folder
from icbsim.ftps import FTPSServer
from icbsim.sftp import SFTPServer
from icbsim.stack import SimStack, default_billers_dir, env_var_name
from icbsim.tls import make_test_pki

DEMO_BILLERS = ("demo_aus", "demo_aus_sftp")


@pytest.fixture
def billers_dir(tmp_path: Path, repo_root: Path) -> Path:
    """A copy of the two demo billers, so billers added to the repo later do not change these tests."""
    folder = tmp_path / "billers"
    folder.mkdir()
    for name in DEMO_BILLERS:
        shutil.copy(repo_root / "include" / "billers" / f"{name}.yaml", folder)
    return folder


@pytest.fixture
def stack(tmp_path: Path, billers_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimStack]:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # paramiko would offer an agent's keys first
    with SimStack(tmp_path / "sim", billers_dir=billers_dir) as running:
        for name, value in running.env().items():
            monkeypatch.setenv(name, value)
        yield running


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_starts_and_stops_without_leftovers(tmp_path: Path, billers_dir: Path) -> None:
    threads_before = set(threading.enumerate())
    stack = SimStack(tmp_path / "sim", billers_dir=billers_dir).start()
    soap_port = int(stack.ic_base_url.split(":")[2].split("/")[0])
    ports = [soap_port, stack.ftps.port, stack.sftp.port]
    assert all(_listening(port) for port in ports)
    assert stack.ic_base_url.startswith("http://127.0.0.1:")
    stack.stop()
    stack.stop()  # idempotent
    assert not any(_listening(port) for port in ports)
    assert _wait_for(lambda: set(threading.enumerate()) <= threads_before), set(threading.enumerate()) - threads_before
    with pytest.raises(RuntimeError, match="not started"):
        stack.connections()


def test_connections_cover_every_biller_and_reach_live_servers(stack: SimStack) -> None:
    conns = stack.connections()
    assert set(conns) == {"demo_aus_ic", "demo_aus_ftps", "demo_aus_cis", "demo_aus_sftp_ic", "demo_aus_sftp_sftp"}
    assert conns["demo_aus_cis"]["conn_type"] == "aus_cis"
    assert conns["demo_aus_ftps"]["conn_type"] == "icb_ftps"
    assert conns["demo_aus_ftps"]["extra"]["ca_file"] == str(stack.ca_file)
    assert conns["demo_aus_sftp_sftp"]["extra"]["host_key"] == stack.sftp.host_key_public
    assert stack.env()[env_var_name("demo_aus_ftps")] == json.dumps(conns["demo_aus_ftps"])

    for biller_id in DEMO_BILLERS:
        access = stack.access(biller_id)
        ok, message = InvoiceCloudHook(ic_conn_id=access.biller.ic_conn_id).test_connection()
        assert ok, message
        transfer = access.biller.invoices.transfer
        with open_remote_folder(transfer.protocol, transfer.conn_id) as folder:
            assert folder.list_names(transfer.inbox) == []
    # Each biller got its own GUID, registered in the simulator with its own BID.
    guids = {stack.access(b).biller_guid for b in DEMO_BILLERS}
    assert len(guids) == 2


def test_wrong_ic_key_is_refused(stack: SimStack, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = dict(stack.connections()["demo_aus_ic"], password="not-the-key")
    monkeypatch.setenv(env_var_name("bad_ic"), json.dumps(fields))
    ok, message = InvoiceCloudHook(ic_conn_id="bad_ic").test_connection()
    assert not ok
    assert "Invalid credentials" in message


def test_sftp_key_auth_and_per_biller_homes(stack: SimStack, monkeypatch: pytest.MonkeyPatch) -> None:
    access = stack.access("demo_aus_sftp")
    fields = stack.connections()["demo_aus_sftp_sftp"]
    fields.pop("password")
    fields["extra"] = dict(fields["extra"], private_key=access.client_key)
    monkeypatch.setenv(env_var_name("sftp_by_key"), json.dumps(fields))
    (access.home / "marker.txt").write_text("x")
    with open_remote_folder("sftp", "sftp_by_key") as folder:
        assert folder.list_names("/") == ["marker.txt"]  # chrooted to the biller's home
    # The FTPS biller's home is its own too.
    ftps = stack.access("demo_aus")
    assert ftps.home == stack.state_dir / "ftps" / "demo_aus"
    with open_remote_folder("ftps", "demo_aus_ftps") as folder:
        assert folder.list_names("/") == []


@pytest.mark.parametrize("biller_id", DEMO_BILLERS)
def test_drop_file_lands_in_the_inbox(stack: SimStack, biller_id: str, tmp_path: Path) -> None:
    source = tmp_path / "123_20261125_UB.TXT"
    source.write_bytes(b"BID|x\r\nTRAILER|0|0|0.00\r\n")
    target = stack.drop_file(biller_id, source)
    assert target == stack.inbox(biller_id) / source.name
    assert target.read_bytes() == source.read_bytes()
    transfer = stack.access(biller_id).biller.invoices.transfer
    with open_remote_folder(transfer.protocol, transfer.conn_id) as folder:
        assert folder.list_names(transfer.inbox) == [source.name]
        assert folder.size(f"{transfer.inbox}/{source.name}") == source.stat().st_size
    assert [p.name for p in target.parent.parent.iterdir() if p.name.endswith(".partial")] == []


def test_secrets_persist_across_restart(tmp_path: Path, billers_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "sim"
    with SimStack(state, billers_dir=billers_dir) as first:
        conns1 = first.connections()
        ca1 = first.ca_file.read_bytes()
        host_key1 = first.sftp.host_key_public
    secrets_file = state / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    saved = json.loads(secrets_file.read_text())
    assert saved["billers"]["demo_aus"]["biller_guid"] == conns1["demo_aus_ic"]["login"]

    secrets_file.chmod(0o644)  # a loosened file is tightened again
    with SimStack(state, billers_dir=billers_dir) as second:
        conns2 = second.connections()
        for conn_id, fields in conns1.items():
            assert conns2[conn_id].get("login") == fields.get("login")  # CIS connections have no login
            assert conns2[conn_id]["password"] == fields["password"]
        assert second.ca_file.read_bytes() == ca1
        assert second.sftp.host_key_public == host_key1
        for name, value in second.env().items():
            monkeypatch.setenv(name, value)
        ok, message = InvoiceCloudHook(ic_conn_id="demo_aus_ic").test_connection()
        assert ok, message
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_only_loopback_or_explicit_wildcard(tmp_path: Path, billers_dir: Path) -> None:
    with pytest.raises(ValueError, match="refusing"):
        SimStack(tmp_path / "sim", host="192.0.2.10", billers_dir=billers_dir)
    # The servers themselves refuse a non-loopback host unless told otherwise (nothing is bound here).
    pki = make_test_pki(tmp_path / "pki")
    with pytest.raises(ValueError, match="non-loopback"):
        FTPSServer(tmp_path / "f", "u", "p", pki, host="0.0.0.0")  # noqa: S104
    with pytest.raises(ValueError, match="non-loopback"):
        SFTPServer(tmp_path / "s", {"u": "p"}, host="0.0.0.0")  # noqa: S104
    FTPSServer(tmp_path / "f", "u", "p", pki, host="0.0.0.0", allow_any_host=True)  # noqa: S104
    SFTPServer(tmp_path / "s", {"u": "p"}, host="0.0.0.0", allow_any_host=True)  # noqa: S104
    # A wildcard stack writes a reachable host into its connections, not 0.0.0.0.
    assert SimStack(tmp_path / "sim", host="0.0.0.0", billers_dir=billers_dir).public_host == "127.0.0.1"  # noqa: S104


def test_default_billers_dir(monkeypatch: pytest.MonkeyPatch, repo_root: Path, tmp_path: Path) -> None:
    monkeypatch.delenv("ICBRIDGE_BILLERS_DIR", raising=False)
    assert default_billers_dir() == repo_root / "include" / "billers"
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(tmp_path))
    assert default_billers_dir() == tmp_path


def test_biller_check_proves_every_connection_of_each_demo_biller(stack, billers_dir, capsys):
    """The onboarding preflight against the running simulators: all green for every demo biller
    (IC, CIS, FTPS/SFTP folders, SMTP); then a missing inbox is a FAIL line naming it, exit 1."""
    from icbridge.cli import main

    for biller_id in sorted(p.stem for p in billers_dir.glob("demo_*.yaml")):
        code = main(["biller", "check", biller_id, "--billers-dir", str(billers_dir)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "[FAIL]" not in out and "checks passed" in out
    shutil.rmtree(stack.inbox("demo_aus"))
    code = main(["biller", "check", "demo_aus", "--billers-dir", str(billers_dir)])
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] invoice inbox" in out and "folders are missing: /outbound" in out


@pytest.mark.usefixtures("airflow_db")
def test_biller_check_page_in_the_airflow_ui(stack, billers_dir, monkeypatch):
    """The same preflight as a page (Admin › Biller check), behind the Airflow login."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from tests.support.web import HTML, bearer, token

    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers_dir))
    (billers_dir / "broken_three.yaml").write_text("biller_id: broken_three\n")
    op = {**bearer(token("ops", "OP")), **HTML}

    def run_check(biller_id: str):
        form = api.get(f"/icbridge/billers/{biller_id}/check", headers=op)
        assert form.status_code == 200 and "ready to unpause" not in form.text  # a GET runs nothing
        [value] = re.findall(r'name="token" value="([^"]+)"', form.text)
        return api.post(f"/icbridge/billers/{biller_id}/check", headers={**op, "Origin": "http://127.0.0.1"},
                        content=f"token={value}", )

    with TestClient(create_app("core"), base_url="http://127.0.0.1", follow_redirects=False) as api:
        listing = api.get("/icbridge/billers/", headers={**bearer(), **HTML})
        assert listing.status_code == 200 and "demo_aus" in listing.text and "broken_three" in listing.text
        page = run_check("demo_aus")
        assert page.status_code == 200 and "ready to unpause" in page.text and "FAIL" not in page.text
        broken = run_check("broken_three")
        assert "fix the failed checks first" in broken.text and "Field required" in broken.text
        assert api.get("/icbridge/billers/demo_aus/check", headers=HTML).status_code in (302, 303, 307, 401)
