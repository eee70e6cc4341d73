"""Server fixtures (FTPS, SFTP): owned by the transfer work.

Every server binds 127.0.0.1 on a random port, serves its own temp root, and uses a
password generated at run time. Airflow connections reach the hooks through
``AIRFLOW_CONN_<ID>`` JSON env vars set with monkeypatch, so nothing touches the metadata DB.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from icbsim.ftps import FTPSServer
from icbsim.sftp import SFTPServer
from icbsim.tls import Pki, make_test_pki

SetConn = Callable[..., str]


@dataclass
class RunningFTPS:
    """A started FTPS server and what a client needs to log in."""

    server: FTPSServer
    root: Path
    user: str
    password: str

    @property
    def port(self) -> int:
        return self.server.port


@dataclass
class ClientKey:
    """An ed25519 client key: OpenSSH private text (``private_key`` extra) and public line."""

    private_openssh: str
    public_openssh: str


@dataclass
class RunningSFTP:
    """A started SFTP server, its user's password, and a client key it trusts."""

    server: SFTPServer
    root: Path
    user: str
    password: str
    client_key: ClientKey

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host_key(self) -> str:
        return self.server.host_key_public


def new_client_key() -> ClientKey:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ClientKey(private_openssh=private, public_openssh=public.decode())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a 127.0.0.1/localhost server certificate, made once per session."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def set_airflow_conn(monkeypatch: pytest.MonkeyPatch) -> SetConn:
    """``set_airflow_conn(conn_id, conn_type=..., host=..., extra={...})`` -> conn_id.

    Airflow 3 reads JSON from ``AIRFLOW_CONN_<ID>``; monkeypatch removes it after the test.
    """

    def _set(conn_id: str, **fields: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    return _set


@pytest.fixture
def ftps_server_factory(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., RunningFTPS]]:
    """Start FTPS servers with custom options (implicit, require_session_reuse); all stopped after."""
    started: list[FTPSServer] = []

    def _start(**options: Any) -> RunningFTPS:
        root = tmp_path / f"ftps-root-{len(started)}"
        root.mkdir()
        user, password = "biller", secrets.token_urlsafe(16)
        server = FTPSServer(root, user, password, pki, **options)
        started.append(server)
        server.start()
        return RunningFTPS(server=server, root=root, user=user, password=password)

    try:
        yield _start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def ftps_server(ftps_server_factory: Callable[..., RunningFTPS]) -> RunningFTPS:
    """Explicit FTPS, TLS required on both channels, session reuse enforced (vsftpd-like)."""
    return ftps_server_factory()


def ftps_conn_fields(running: RunningFTPS, pki: Pki, **extra: Any) -> dict[str, Any]:
    """Connection fields for ``running``; ``extra`` overrides/extends the default extras."""
    return {
        "conn_type": "icb_ftps",
        "host": "127.0.0.1",
        "login": running.user,
        "password": running.password,
        "port": running.port,
        "extra": {"ca_file": str(pki.ca_cert), "timeout": 5, **extra},
    }


@pytest.fixture
def ftps_conn_id(ftps_server: RunningFTPS, pki: Pki, set_airflow_conn: SetConn) -> str:
    """An ``icb_ftps`` Airflow connection to ``ftps_server`` trusting the test CA."""
    return set_airflow_conn("icb_ftps_test", **ftps_conn_fields(ftps_server, pki))


@pytest.fixture
def sftp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSFTP]:
    """SFTP with password and public-key auth for one user; a fresh host key per test."""
    # paramiko would offer an ssh-agent's keys first; keep auth deterministic.
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    root = tmp_path / "sftp-root"
    root.mkdir()
    user, password = "biller", secrets.token_urlsafe(16)
    client_key = new_client_key()
    server = SFTPServer(root, {user: password}, authorized_keys={user: [client_key.public_openssh]})
    try:
        server.start()
        yield RunningSFTP(server=server, root=root, user=user, password=password, client_key=client_key)
    finally:
        server.stop()


def sftp_conn_fields(running: RunningSFTP, *, use_key: bool = False, **extra: Any) -> dict[str, Any]:
    """Connection fields for ``running`` with host key checking on (``host_key`` extra)."""
    fields: dict[str, Any] = {
        "conn_type": "sftp",
        "host": "127.0.0.1",
        "login": running.user,
        "port": running.port,
    }
    extras: dict[str, Any] = {"host_key": running.host_key, "look_for_keys": "false", "conn_timeout": 5}
    if use_key:
        extras["private_key"] = running.client_key.private_openssh
    else:
        fields["password"] = running.password
    extras.update(extra)
    fields["extra"] = extras
    return fields


@pytest.fixture
def sftp_conn_id(sftp_server: RunningSFTP, set_airflow_conn: SetConn) -> str:
    """An ``sftp`` Airflow connection (password auth) to ``sftp_server``, host key pinned."""
    return set_airflow_conn("icb_sftp_test", **sftp_conn_fields(sftp_server))
