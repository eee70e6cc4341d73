"""Real file servers from Debian's packages: vsftpd (explicit and implicit FTPS,
``require_ssl_reuse=YES``) and OpenSSH's sshd (an ed25519 host key), on 127.0.0.1, free
ports, with their own config files; every process stopped after its test.

They share none of our assumptions (our simulators do). They need the packages and root (a
real local user logs in): ``scripts/setup.sh`` installs them where it may (root, CI). Without
them the tests that use these fixtures skip with the reason — and fail instead when ``CI`` is
set, so CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from icbsim.tls import Pki

VSFTPD = "/usr/sbin/vsftpd"
SSHD = "/usr/sbin/sshd"
USER = "icbtransfer"


def _missing(binary: str, package: str) -> str | None:
    if not Path(binary).exists():
        return f"{binary} is not installed (Debian package {package}; scripts/setup.sh installs it as root)"
    if os.geteuid() != 0:
        return f"{package} needs root here (a real local user logs in)"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the real-server tests: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _user(password: str, home: Path) -> None:
    """The one local user both servers log in (created once; its password set per test)."""
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", "--home-dir", str(home), USER],
                       check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}", text=True, check=True, capture_output=True)
    subprocess.run(["usermod", "--home", str(home), USER], check=True, capture_output=True)


@dataclass
class RealServer:
    kind: str  # vsftpd-explicit | vsftpd-implicit | sshd
    port: int
    root: Path  # the user's folder (what the server shows as /)
    user: str
    password: str
    host_key: str = ""  # sshd: "ssh-ed25519 AAAA…"


BASE = Path("/srv/icbridge-real-servers")  # root-owned path (sshd chroot rule); pytest tmp dirs are 0700


@contextlib.contextmanager
def _root() -> Iterator[Path]:
    BASE.mkdir(mode=0o755, exist_ok=True)
    root = BASE / secrets.token_hex(6)
    root.mkdir(mode=0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def vsftpd(tmp_path: Path, pki: Pki, *, implicit: bool = False, idle_seconds: int = 300) -> Iterator[RealServer]:
    """vsftpd 3 with TLS required on both channels and session reuse required."""
    reason = _missing(VSFTPD, "vsftpd")
    if reason:
        _skip_or_fail(reason)
    password = secrets.token_urlsafe(12)
    with _root() as root:
        _user(password, root)
        shutil.chown(root, USER, USER)
        yield from _run_vsftpd(tmp_path, pki, root, password, implicit, idle_seconds)


def _run_vsftpd(tmp_path: Path, pki: Pki, root: Path, password: str, implicit: bool,
                idle_seconds: int) -> Iterator[RealServer]:
    port = _free_port()
    log = tmp_path / "vsftpd.log"
    empty = tmp_path / "vsftpd-empty"
    empty.mkdir()
    config = tmp_path / "vsftpd.conf"
    config.write_text("\n".join([
        "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={port}", "background=NO",
        "anonymous_enable=NO", "local_enable=YES", "write_enable=YES", "local_umask=022",
        "chroot_local_user=YES", "allow_writeable_chroot=YES", f"secure_chroot_dir={empty}",
        "seccomp_sandbox=NO", "isolate_network=NO", "isolate=NO", "pam_service_name=vsftpd",
        "ssl_enable=YES", f"rsa_cert_file={pki.server_cert}", f"rsa_private_key_file={pki.server_key}",
        "force_local_logins_ssl=YES", "force_local_data_ssl=YES", "require_ssl_reuse=YES",
        "ssl_tlsv1=NO", "ssl_sslv2=NO", "ssl_sslv3=NO", f"implicit_ssl={'YES' if implicit else 'NO'}",
        "pasv_enable=YES", "pasv_address=127.0.0.1", "pasv_min_port=40000", "pasv_max_port=40999",
        f"idle_session_timeout={idle_seconds}", "data_connection_timeout=60",
        f"vsftpd_log_file={log}", "xferlog_enable=YES", "dual_log_enable=YES", "log_ftp_protocol=YES",
        "utf8_filesystem=YES", "",
    ]))
    log.touch()
    process = subprocess.Popen([VSFTPD, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, log)
        yield RealServer("vsftpd-implicit" if implicit else "vsftpd-explicit", port, root, USER, password)
    finally:
        _stop(process)


@contextlib.contextmanager
def sshd(tmp_path: Path) -> Iterator[RealServer]:
    """OpenSSH sshd with a fresh ed25519 host key, password auth, SFTP only (internal-sftp)
    chrooted to the user's folder (so paths are the ones billers give: /outbound)."""
    reason = _missing(SSHD, "openssh-server")
    if reason:
        _skip_or_fail(reason)
    password = secrets.token_urlsafe(12)
    with _root() as root:  # root-owned: sshd's ChrootDirectory requires it
        _user(password, root)
        yield from _run_sshd(tmp_path, root, password)


def _run_sshd(tmp_path: Path, root: Path, password: str) -> Iterator[RealServer]:
    host_key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = _free_port()
    log = tmp_path / "sshd.log"
    config = tmp_path / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM yes", "PermitRootLogin no",
        f"AllowUsers {USER}", "Subsystem sftp internal-sftp", f"PidFile {tmp_path / 'sshd.pid'}",
        f"ChrootDirectory {root}", "ForceCommand internal-sftp", "AllowTcpForwarding no",
        "StrictModes no", "",
    ]))
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, log)
        public = (tmp_path / "ssh_host_ed25519_key.pub").read_text().split()
        yield RealServer("sshd", port, root, USER, password, host_key=f"{public[0]} {public[1]}")
    finally:
        _stop(process)


def owned_inbox(server: RealServer, folder: Path) -> None:
    """Give ``folder`` to the servers' user (it writes the archive there)."""
    shutil.chown(folder, server.user, server.user)


def real_server(request: pytest.FixtureRequest, kind: str) -> tuple[RealServer, dict]:
    """Start ``vsftpd`` (explicit FTPS) or ``sshd`` for the test (stopped at its end) and the
    Airflow connection fields that reach it, TLS / host key checked."""
    tmp_path = request.getfixturevalue("tmp_path")
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    if kind == "vsftpd":
        pki = request.getfixturevalue("pki")
        server = stack.enter_context(vsftpd(tmp_path, pki))
        extra = {"ca_file": str(pki.ca_cert), "timeout": 5}
        return server, {"conn_type": "icb_ftps", "host": "127.0.0.1", "port": server.port, "login": server.user,
                        "password": server.password, "extra": extra}
    server = stack.enter_context(sshd(tmp_path))
    extra = {"host_key": server.host_key, "look_for_keys": "false", "conn_timeout": 5}
    return server, {"conn_type": "sftp", "host": "127.0.0.1", "port": server.port, "login": server.user,
                    "password": server.password, "extra": extra}
