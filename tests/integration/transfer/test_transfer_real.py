"""The transfer layer against real servers from Debian's packages (tests/support/real_servers.py):
vsftpd 3 (explicit and implicit FTPS, require_ssl_reuse=YES) and OpenSSH 9 sshd. Odd names
as real inboxes hold them, a session the server closed while we worked, host keys as people
paste them, refusals that no retry can fix."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from icbridge.hooks.transfer import TransferRefused, normalize_host_key, open_remote_folder
from tests.support.real_servers import RealServer, sshd, vsftpd

ODD = "caf\udce9.TXT"  # a cp1252 é on a UTF-8 server: not valid UTF-8
LEAD = " 123_20261101_UB.TXT"  # a leading blank: LIST's columns hide it


def _inbox(server: RealServer) -> Path:
    inbox = server.root / "outbound"
    inbox.mkdir()
    os.chown(inbox, *_ids(server))
    for name, data in (("123_20261101_UB.TXT", b"one"), (LEAD, b"lead"), (ODD, b"odd")):
        path = inbox / name  # os.fsencode turns the surrogate escape back into the byte 0xE9
        path.write_bytes(data)
        os.chown(path, *_ids(server))
    (inbox / "sub.TXT").mkdir()  # a folder named like a file is not a file
    return inbox


def _ids(server: RealServer) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(server.user)
    return entry.pw_uid, entry.pw_gid


def _conn(set_airflow_conn, server: RealServer, pki=None, **extra: Any) -> str:
    if server.kind == "sshd":
        extras = {"host_key": server.host_key, "look_for_keys": "false", "conn_timeout": 5, **extra}
        return set_airflow_conn("real", conn_type="sftp", host="127.0.0.1", port=server.port, login=server.user,
                                password=server.password, extra=extras)
    extras = {"ca_file": str(pki.ca_cert), "timeout": 5, "implicit": server.kind == "vsftpd-implicit", **extra}
    return set_airflow_conn("real", conn_type="icb_ftps", host="127.0.0.1", port=server.port, login=server.user,
                            password=server.password, extra=extras)


@pytest.fixture(params=["vsftpd-explicit", "vsftpd-implicit", "sshd"])
def real(request, tmp_path, pki) -> Iterator[tuple[RealServer, str]]:
    kind = request.param
    if kind == "sshd":
        with sshd(tmp_path) as server:
            yield server, "sftp"
    else:
        with vsftpd(tmp_path, pki, implicit=kind == "vsftpd-implicit") as server:
            yield server, "ftps"


def test_list_download_upload_archive_with_odd_names(real, set_airflow_conn, pki, tmp_path):
    server, protocol = real
    inbox = _inbox(server)
    conn_id = _conn(set_airflow_conn, server, pki)
    with open_remote_folder(protocol, conn_id) as folder:
        names = folder.list_names("/outbound")
        assert names == sorted(["123_20261101_UB.TXT", LEAD, ODD])  # exact, the odd one kept escaped
        folder.download(f"/outbound/{LEAD}", tmp_path / "lead")
        assert (tmp_path / "lead").read_bytes() == b"lead"
        folder.makedirs("/outbound/archive/2026")
        folder.rename(f"/outbound/{LEAD}", f"/outbound/archive/2026/{LEAD}")
        (tmp_path / "up").write_bytes(b"uploaded")
        folder.upload(tmp_path / "up", "/outbound/archive/up.BIF")
        assert folder.size("/outbound/archive/up.BIF") == 8
    assert (inbox / "archive" / "2026" / LEAD).read_bytes() == b"lead"
    assert (inbox / "archive" / "up.BIF").read_bytes() == b"uploaded"


def test_find_files_ignores_a_name_that_is_not_utf8_and_takes_the_rest(real, set_airflow_conn, pki):
    from icbridge.config.biller import BillerConfig
    from icbridge.flows.invoices import find_files

    server, protocol = real
    _inbox(server)
    biller = BillerConfig.model_validate({
        "biller_id": "t_real", "bid": "123", "name": "T", "cis": "aus", "ic_conn_id": "ic",
        "invoices": {"transfer": {"protocol": protocol, "conn_id": _conn(set_airflow_conn, server, pki),
                                  "inbox": "/outbound"},
                     "invoice_format_guid": "5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F", "invoice_type_id": "1"}})
    with open_remote_folder(protocol, biller.invoices.transfer.conn_id) as folder:
        found = find_files(folder, biller)
    assert found.files == ["123_20261101_UB.TXT"]
    reasons = dict(found.ignored)
    assert reasons["caf\\xe9.TXT"].startswith("name is not valid UTF-8")
    assert LEAD in reasons  # a leading blank does not follow the naming convention


def test_a_session_the_server_closed_is_opened_again_before_the_next_step(tmp_path, pki, set_airflow_conn):
    """vsftpd idle_session_timeout: mapping and uploading outlast it; archiving must still work."""
    with vsftpd(tmp_path, pki, idle_seconds=1) as server:
        _inbox(server)
        with open_remote_folder("ftps", _conn(set_airflow_conn, server, pki)) as folder:
            assert "123_20261101_UB.TXT" in folder.list_names("/outbound")
            time.sleep(2.5)  # the server drops the idle control connection
            folder.makedirs("/outbound/archive")
            folder.rename("/outbound/123_20261101_UB.TXT", "/outbound/archive/123_20261101_UB.TXT")
        assert (server.root / "outbound" / "archive" / "123_20261101_UB.TXT").exists()


def test_an_sftp_session_the_server_closed_is_opened_again(tmp_path, set_airflow_conn):
    with sshd(tmp_path) as server:
        _inbox(server)
        with open_remote_folder("sftp", _conn(set_airflow_conn, server)) as folder:
            folder._sftp.get_channel().close()  # as sshd's ChannelTimeout / a restart leaves it
            folder.makedirs("/outbound/archive")
            folder.rename("/outbound/123_20261101_UB.TXT", "/outbound/archive/123_20261101_UB.TXT")
        assert (server.root / "outbound" / "archive" / "123_20261101_UB.TXT").exists()


def test_host_key_in_the_forms_people_paste(tmp_path, set_airflow_conn):
    with sshd(tmp_path) as server:
        _inbox(server)
        key_type, blob = server.host_key.split()
        for form in (server.host_key, f"[127.0.0.1]:{server.port} {key_type} {blob}",
                     f"127.0.0.1 {key_type} {blob} root@host", blob):
            with open_remote_folder("sftp", _conn(set_airflow_conn, server, host_key=form)) as folder:
                assert "123_20261101_UB.TXT" in folder.list_names("/outbound")
        with pytest.raises(ValueError, match="host_key is not a public key: give `ssh-ed25519 AAAA"):
            normalize_host_key("not a key")


def test_a_changed_host_key_and_a_wrong_password_are_final_at_once(tmp_path, set_airflow_conn, pki):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    with sshd(tmp_path) as server:
        started = time.monotonic()
        with pytest.raises(TransferRefused, match=r"host key of .* is not the one .* SHA256:.*expected.*SHA256:"):
            open_remote_folder("sftp", _conn(set_airflow_conn, server, host_key=other))
        assert time.monotonic() - started < 3  # no retries: a security refusal is final
        conn_id = set_airflow_conn("bad", conn_type="sftp", host="127.0.0.1", port=server.port, login=server.user,
                                   password="wrong", extra={"host_key": server.host_key, "look_for_keys": "false"})
        with pytest.raises(TransferRefused, match="refused the login"):
            open_remote_folder("sftp", conn_id)
    (tmp_path / "v").mkdir()
    with vsftpd(tmp_path / "v", pki) as ftp_server:
        conn_id = set_airflow_conn("badftp", conn_type="icb_ftps", host="127.0.0.1", port=ftp_server.port,
                                   login=ftp_server.user, password="wrong", extra={"ca_file": str(pki.ca_cert)})
        with pytest.raises(TransferRefused, match="refused the login"):
            open_remote_folder("ftps", conn_id)


def test_normalize_host_key_reads_the_type_from_a_bare_key():
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + bytes(32)).decode()
    assert normalize_host_key(blob) == f"ssh-ed25519 {blob}"
    assert normalize_host_key(f"[h]:22 ssh-ed25519 {blob} c") == f"ssh-ed25519 {blob}"


@pytest.mark.parametrize("real", ["sshd", "vsftpd-explicit"], indirect=True)
def test_the_third_identical_copy_of_a_file_is_archived_and_the_inbox_cleared(real, set_airflow_conn, pki):
    """Issue 22 item 6: the same file delivered three times (same name, same bytes). Copies 1
    and 2 go to archive/NAME and archive/NAME.<sha12>.TXT; copy 3 (OpenSSH's rename refuses an
    existing target) is recognised as archived and leaves the inbox; a fourth with other bytes
    under the same hash name (a collision, forced here) gets a free name."""
    import hashlib

    from icbridge.config.biller import TransferConfig
    from icbridge.flows.invoices import archive

    server, protocol = real
    inbox = server.root / "outbound"
    inbox.mkdir()
    os.chown(inbox, *_ids(server))
    name, data = "123_20261101_UB.TXT", b"H|same bytes\r\n"
    sha = hashlib.sha256(data).hexdigest()
    transfer = TransferConfig(protocol=protocol, conn_id="real", inbox="/outbound")
    conn_id = _conn(set_airflow_conn, server, pki)
    got = []
    for content in (data, data, data, b"other bytes of another size"):
        (inbox / name).write_bytes(content)
        os.chown(inbox / name, *_ids(server))
        with open_remote_folder(protocol, conn_id) as folder:
            got.append(archive(folder, transfer, name, sha))
        assert not (inbox / name).exists()
    assert got == [f"/outbound/archive/{name}", f"/outbound/archive/123_20261101_UB.{sha[:12]}.TXT",
                   f"/outbound/archive/123_20261101_UB.{sha[:12]}.TXT",
                   f"/outbound/archive/123_20261101_UB.{sha[:12]}.2.TXT"]
    assert sorted(p.name for p in (inbox / "archive").iterdir()) == sorted({g.rsplit("/", 1)[1] for g in got})
