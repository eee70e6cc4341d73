"""Transfer over real FTPS and SFTP servers (no mocks): adapters, hooks and the simulators.

The FTPS simulator refuses data connections that do not resume the control connection's
TLS session (as vsftpd does), so these tests prove IcbFTPSHook reuses sessions.
"""

from __future__ import annotations

import ftplib  # noqa: S402  # TLS-only clients below
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from icbridge.hooks.ftps import IcbFTPSHook, parse_bool
from icbridge.hooks.transfer import TransferRefused, open_remote_folder
from icbridge.transfer.remote import RemoteFolder, parse_list_line
from icbsim.ftps import SESSION_REUSE_REPLY
from icbsim.tls import Pki, make_test_pki
from tests.support.servers import (
    RunningFTPS,
    RunningSFTP,
    SetConn,
    ftps_conn_fields,
    new_client_key,
    sftp_conn_fields,
)


@dataclass
class Remote:
    protocol: str
    conn_id: str
    root: Path


@pytest.fixture(params=["ftps", "sftp"])
def remote(request: pytest.FixtureRequest) -> Remote:
    """One running server per protocol plus its Airflow connection (only that server starts)."""
    protocol = request.param
    server = request.getfixturevalue(f"{protocol}_server")
    conn_id = request.getfixturevalue(f"{protocol}_conn_id")
    return Remote(protocol=protocol, conn_id=conn_id, root=server.root)


def _seed(root: Path) -> None:
    (root / "inbox" / "sub").mkdir(parents=True)
    (root / "inbox" / "AUS_0001.txt").write_bytes(b"H|header\r\nD|1|42.00\r\n")
    (root / "inbox" / "AUS_0002.txt").write_bytes(b"x" * 70_000)  # more than one data block
    (root / "inbox" / "empty.txt").write_bytes(b"")


# --- both protocols through open_remote_folder ------------------------------------------


def test_remote_folder_operations(remote: Remote, tmp_path: Path) -> None:
    _seed(remote.root)
    local = tmp_path / "local"
    folder = open_remote_folder(remote.protocol, remote.conn_id)
    try:
        assert isinstance(folder, RemoteFolder)
        # list: plain file names only, no directories
        assert folder.list_names("/inbox") == ["AUS_0001.txt", "AUS_0002.txt", "empty.txt"]
        assert folder.list_names("inbox") == ["AUS_0001.txt", "AUS_0002.txt", "empty.txt"]

        # size, including an empty file
        assert folder.size("/inbox/AUS_0001.txt") == 21
        assert folder.size("/inbox/AUS_0002.txt") == 70_000
        assert folder.size("/inbox/empty.txt") == 0

        # download: exact bytes, no partial file left behind
        folder.download("/inbox/AUS_0002.txt", local / "AUS_0002.txt")
        folder.download("/inbox/AUS_0001.txt", local / "AUS_0001.txt")
        assert (local / "AUS_0002.txt").read_bytes() == b"x" * 70_000
        assert (local / "AUS_0001.txt").read_bytes() == b"H|header\r\nD|1|42.00\r\n"
        assert sorted(p.name for p in local.iterdir()) == ["AUS_0001.txt", "AUS_0002.txt"]

        # makedirs: nested, and again (idempotent)
        folder.makedirs("/outbox/2026/01")
        folder.makedirs("/outbox/2026/01")
        folder.makedirs("archive")
        assert (remote.root / "outbox" / "2026" / "01").is_dir()
        assert (remote.root / "archive").is_dir()

        # upload
        payload = tmp_path / "BIF_0001.txt"
        payload.write_bytes(b"BIF|1\r\n" * 1000)
        folder.upload(payload, "/outbox/2026/01/BIF_0001.txt")
        assert (remote.root / "outbox/2026/01/BIF_0001.txt").read_bytes() == payload.read_bytes()
        assert folder.size("/outbox/2026/01/BIF_0001.txt") == payload.stat().st_size

        # rename (move into another directory)
        folder.rename("/inbox/AUS_0001.txt", "/archive/AUS_0001.txt")
        assert folder.list_names("/inbox") == ["AUS_0002.txt", "empty.txt"]
        assert folder.list_names("/archive") == ["AUS_0001.txt"]
        assert not (remote.root / "inbox" / "AUS_0001.txt").exists()
    finally:
        folder.close()
    folder.close()  # closing twice is harmless


def test_download_of_missing_file_fails_and_leaves_nothing(remote: Remote, tmp_path: Path) -> None:
    folder = open_remote_folder(remote.protocol, remote.conn_id)
    try:
        with pytest.raises((OSError, ftplib.error_perm)):
            folder.download("/nope.txt", tmp_path / "dl" / "nope.txt")
    finally:
        folder.close()
    assert list((tmp_path / "dl").iterdir()) == []


def test_unknown_protocol_is_named() -> None:
    with pytest.raises(ValueError, match="'scp'"):
        open_remote_folder("scp", "whatever")


# --- FTPS -----------------------------------------------------------------------------


def _plain_ftplib(running: RunningFTPS, pki: Pki) -> ftplib.FTP_TLS:
    """The stdlib client as the provider FTPSHook uses it: verified TLS, no session reuse."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    client = ftplib.FTP_TLS(context=context, timeout=5)  # noqa: S321  # TLS, verified
    client.connect("127.0.0.1", running.port)
    client.login(running.user, running.password)
    client.prot_p()
    return client


def test_ftps_server_refuses_data_connection_without_session_reuse(
    ftps_server: RunningFTPS, ftps_conn_id: str, pki: Pki
) -> None:
    (ftps_server.root / "a.txt").write_text("a")
    client = _plain_ftplib(ftps_server, pki)
    try:
        with pytest.raises(ftplib.error_perm) as listing:
            client.nlst()
        assert str(listing.value) == SESSION_REUSE_REPLY
        with pytest.raises(ftplib.error_perm, match="^522 "):
            client.retrbinary("RETR a.txt", lambda _: None)
    finally:
        client.close()

    with IcbFTPSHook(ftp_conn_id=ftps_conn_id) as hook:
        ftp = hook.get_conn()
        data = ftp.transfercmd("NLST")
        try:
            assert isinstance(data, ssl.SSLSocket)
            assert data.session_reused
            names = data.recv(1024)
        finally:
            data.close()
        ftp.voidresp()
        assert names.strip() == b"a.txt"
        assert hook.list_directory("/") == ["a.txt"]


def test_plain_ftplib_works_when_reuse_not_required(
    ftps_server_factory: Callable[..., RunningFTPS], pki: Pki
) -> None:
    """Control experiment: the 522 above is due to session reuse, nothing else."""
    running = ftps_server_factory(require_session_reuse=False)
    (running.root / "a.txt").write_text("a")
    client = _plain_ftplib(running, pki)
    try:
        assert client.nlst() == ["a.txt"]
    finally:
        client.close()


def test_ftps_wrong_ca_fails_verification(
    ftps_server: RunningFTPS, pki: Pki, set_airflow_conn: SetConn, tmp_path: Path
) -> None:
    other = make_test_pki(tmp_path / "other-pki")
    conn_id = set_airflow_conn("icb_ftps_wrong_ca", **ftps_conn_fields(ftps_server, pki, ca_file=str(other.ca_cert)))
    hook = IcbFTPSHook(ftp_conn_id=conn_id)
    with pytest.raises(ssl.SSLCertVerificationError):
        hook.get_conn()
    ok, message = IcbFTPSHook(ftp_conn_id=conn_id).test_connection()
    assert not ok
    assert "certificate verify failed" in message


def test_ftps_verification_flags(
    ftps_server: RunningFTPS, pki: Pki, set_airflow_conn: SetConn, tmp_path: Path
) -> None:
    """Hostname checked by default (and the DNS SAN works); verify=false is an explicit opt-out."""
    context = IcbFTPSHook.build_ssl_context(None, verify=True)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED

    by_name = ftps_conn_fields(ftps_server, pki)
    by_name["host"] = "localhost"
    ok, message = IcbFTPSHook(ftp_conn_id=set_airflow_conn("icb_ftps_by_name", **by_name)).test_connection()
    assert ok, message

    other = make_test_pki(tmp_path / "other-pki")
    lab = ftps_conn_fields(ftps_server, pki, ca_file=str(other.ca_cert), verify="false")
    ok, message = IcbFTPSHook(ftp_conn_id=set_airflow_conn("icb_ftps_lab", **lab)).test_connection()
    assert ok, message


def test_ftps_test_connection(ftps_conn_id: str) -> None:
    hook = IcbFTPSHook(ftp_conn_id=ftps_conn_id)
    ok, message = hook.test_connection()
    assert ok, message
    assert hook.conn is None  # test_connection closes what it opened


def test_ftps_implicit(
    ftps_server_factory: Callable[..., RunningFTPS], pki: Pki, set_airflow_conn: SetConn
) -> None:
    running = ftps_server_factory(implicit=True)
    (running.root / "in").mkdir()
    (running.root / "in" / "f.txt").write_bytes(b"implicit")
    conn_id = set_airflow_conn("icb_ftps_implicit", **ftps_conn_fields(running, pki, implicit=True))
    folder = open_remote_folder("ftps", conn_id)
    try:
        assert folder.list_names("/in") == ["f.txt"]
        assert folder.size("/in/f.txt") == 8
    finally:
        folder.close()


def test_ftps_port_stays_on_the_connection(
    ftps_server_factory: Callable[..., RunningFTPS], pki: Pki, set_airflow_conn: SetConn
) -> None:
    """The provider hook writes ftplib.FTP_TLS.port (process-wide); ours never does."""
    class_port_before = ftplib.FTP_TLS.port
    first, second = ftps_server_factory(), ftps_server_factory()
    (first.root / "one.txt").write_text("1")
    (second.root / "two.txt").write_text("2")
    id_one = set_airflow_conn("icb_ftps_one", **ftps_conn_fields(first, pki))
    id_two = set_airflow_conn("icb_ftps_two", **ftps_conn_fields(second, pki))
    folder_one = open_remote_folder("ftps", id_one)
    folder_two = open_remote_folder("ftps", id_two)
    try:
        assert folder_one.list_names("/") == ["one.txt"]
        assert folder_two.list_names("/") == ["two.txt"]
        assert folder_one.list_names("/") == ["one.txt"]
    finally:
        folder_one.close()
        folder_two.close()
    assert ftplib.FTP_TLS.port == class_port_before == ftplib.FTP_PORT
    assert "port" not in vars(ftplib.FTP_TLS)


def test_ftps_strict_boolean_extras() -> None:
    assert parse_bool("False", True, "verify") is False
    assert parse_bool(None, True, "verify") is True
    with pytest.raises(ValueError, match="verify"):
        parse_bool("flase", True, "verify")


def test_parse_list_line() -> None:
    assert parse_list_line("-rw-r--r--    1 1000     1000           21 Jan 01 10:00 AUS 1.txt") == (
        "AUS 1.txt",
        True,
    )
    assert parse_list_line("drwxr-xr-x    2 1000     1000         4096 Jan 01 10:00 sub") == ("sub", False)
    assert parse_list_line("01-31-26  10:00AM       <DIR>          sub") == ("sub", False)
    assert parse_list_line("01-31-26  10:00AM                 1234 a.txt") == ("a.txt", True)
    assert parse_list_line("total 12") is None
    # issue 22 item 5: the forms the maintained parsers (ftputil) know
    assert parse_list_line("-rw-r--r--   1 owner  1234 Nov 01 12:00 123_20261101_UB.TXT") == (
        "123_20261101_UB.TXT", True)  # no group column
    assert parse_list_line("-rw-r--r--   1 1001 1001 1234 Nov 01  2025 123_20261101_UB.TXT") == (
        "123_20261101_UB.TXT", True)  # numeric ids, a year
    assert parse_list_line("lrwxrwxrwx   1 ftp ftp 5 Nov 01 12:00 a.TXT -> b.TXT") == ("a.TXT", False)


def test_a_server_without_mlsd_and_without_a_group_column_lists_the_export(
    ftps_server_factory, pki: Pki, set_airflow_conn: SetConn, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Issue 22 item 5, against pyftpdlib with MLSD turned off and LIST lines written without the
    group column (as some servers do): the export is listed (it was dropped). A line that no
    parser reads is reported, and its file is not silently left out."""
    import re

    from pyftpdlib.filesystems import AbstractedFS

    from icbsim.ftps import FTPSServer

    class NoGroupFS(AbstractedFS):
        def format_list(self, basedir, listing, ignore_err=True):
            for line in super().format_list(basedir, listing, ignore_err):
                text = line.decode()
                if "ODD" in text:
                    yield b"?rw-r--r-- weird line ODD_20261101_UB.TXT\r\n"
                    continue
                yield re.sub(r"^(\S+\s+\d+\s+\S+)\s+\S+(\s+\d+\s)", r"\1\2", text).encode()

    original = FTPSServer._handler_class

    def handler_class(self):
        handler = original(self)
        handler.proto_cmds = {k: v for k, v in handler.proto_cmds.items() if k != "MLSD"}
        handler.abstracted_fs = NoGroupFS
        return handler

    monkeypatch.setattr(FTPSServer, "_handler_class", handler_class)
    running = ftps_server_factory()
    (running.root / "inbox" / "archive").mkdir(parents=True)
    for name in ("123_20261101_UB.TXT", "ODD_20261101_UB.TXT"):
        (running.root / "inbox" / name).write_bytes(b"H|x\r\n")
    set_airflow_conn("t_nogroup", **ftps_conn_fields(running, pki))
    with open_remote_folder("ftps", "t_nogroup") as folder:
        lines: list[str] = []
        folder._ftp.retrlines("LIST /inbox", lines.append)  # what the server really sends
        assert any(re.match(r"^-rw\S+\s+\d+\s+\S+\s+\d+\s+\w{3}\s", line) for line in lines), lines
        with pytest.raises(ftplib.error_perm):
            list(folder._ftp.mlsd("/inbox"))
        assert folder.list_names("/inbox") == ["123_20261101_UB.TXT", "ODD_20261101_UB.TXT"]
    assert "LIST line(s) not understood for 'ODD_20261101_UB.TXT'" in caplog.text


# --- SFTP -----------------------------------------------------------------------------


def test_sftp_key_auth(sftp_server: RunningSFTP, set_airflow_conn: SetConn) -> None:
    (sftp_server.root / "k.txt").write_bytes(b"key")
    conn_id = set_airflow_conn("icb_sftp_key", **sftp_conn_fields(sftp_server, use_key=True))
    folder = open_remote_folder("sftp", conn_id, connect_attempts=1)
    try:
        assert folder.list_names("/") == ["k.txt"]
    finally:
        folder.close()


def test_sftp_wrong_password_and_unknown_key_are_refused(
    sftp_server: RunningSFTP, set_airflow_conn: SetConn
) -> None:
    bad_pw = sftp_conn_fields(sftp_server)
    bad_pw["password"] = "not-" + sftp_server.password
    conn_id = set_airflow_conn("icb_sftp_bad_pw", **bad_pw)
    with pytest.raises(TransferRefused, match="refused the login"):  # final: no retry, names what to fix
        open_remote_folder("sftp", conn_id, connect_attempts=3)

    stranger = new_client_key()
    conn_id = set_airflow_conn(
        "icb_sftp_bad_key",
        **sftp_conn_fields(sftp_server, use_key=True, private_key=stranger.private_openssh),
    )
    with pytest.raises(TransferRefused, match="refused the login"):
        open_remote_folder("sftp", conn_id, connect_attempts=1)


def test_sftp_wrong_host_key_is_refused(sftp_server: RunningSFTP, set_airflow_conn: SetConn) -> None:
    imposter = new_client_key().public_openssh  # any other ed25519 key
    conn_id = set_airflow_conn("icb_sftp_bad_host", **sftp_conn_fields(sftp_server, host_key=imposter))
    with pytest.raises(TransferRefused, match="host key of 127.0.0.1 is not the one"):
        open_remote_folder("sftp", conn_id, connect_attempts=3)


def test_sftp_connection_without_host_key_check_is_rejected(
    sftp_server: RunningSFTP, set_airflow_conn: SetConn
) -> None:
    fields = sftp_conn_fields(sftp_server)
    fields["extra"] = {"no_host_key_check": "true", "look_for_keys": "false"}
    conn_id = set_airflow_conn("icb_sftp_nocheck", **fields)
    with pytest.raises(ValueError, match="host key"):
        open_remote_folder("sftp", conn_id, connect_attempts=1)


def test_sftp_is_chrooted(sftp_server: RunningSFTP, sftp_conn_id: str) -> None:
    (sftp_server.root / "top.txt").write_text("t")
    folder = open_remote_folder("sftp", sftp_conn_id)
    try:
        assert folder.list_names("/..") == ["top.txt"]
        assert folder.list_names("/../../..") == ["top.txt"]
    finally:
        folder.close()


@pytest.mark.parametrize("make", [
    lambda: open_remote_folder("ftps", "no_such_conn"),
    lambda: open_remote_folder("sftp", "no_such_conn"),
    lambda: __import__("icbridge.hooks.invoice_cloud", fromlist=["x"]).InvoiceCloudHook(ic_conn_id="no_such_conn")
    .get_conn(),
    lambda: __import__("icbridge.hooks.smtp", fromlist=["x"]).IcbSmtpHook(smtp_conn_id="no_such_conn").get_conn(),
])
def test_a_missing_connection_fails_at_once_without_retry(make, monkeypatch):
    """A mistyped connection id is not fixed by waiting: AirflowFailException (no retry), naming it."""
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    with pytest.raises(AirflowFailException, match="'no_such_conn' is not defined: create it"):
        make()
