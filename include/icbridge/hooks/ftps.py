"""FTPS hook that works against the billers' real servers.

The provider's ``FTPSHook`` falls short in ways that matter here (see shared/PITFALLS.md):
it sets the port on the ``ftplib.FTP_TLS`` class (process-wide, so two connections in one
worker race), has no CA file, no timeout, no implicit FTPS, and opens data connections
with a fresh TLS session, which vsftpd (``require_ssl_reuse=YES``) refuses with 522.
``IcbFTPSHook`` keeps the provider's file API and replaces only ``get_conn``.

Connection extras (all optional):

- ``ca_file``: PEM CA bundle to trust instead of the system store.
- ``timeout``: socket timeout in seconds (default 30).
- ``implicit``: TLS from the first byte (port 990 by default) instead of ``AUTH TLS``.
- ``passive``: passive data connections (default true).
- ``verify``: verify the certificate and hostname (default true; false is for labs only).
- ``encoding``: control-channel encoding (default utf-8).
"""

from __future__ import annotations

import ftplib  # noqa: S402  # FTPS only: every connection made here is TLS-wrapped
import json
import socket
import ssl
import sys
from typing import Any

from airflow.providers.ftp.hooks.ftp import FTPSHook

from icbridge.hooks.base import FailFastConnection

__all__ = ["IcbFTPSHook", "SessionReusingFTP_TLS", "parse_bool"]

DEFAULT_TIMEOUT = 30.0
EXPLICIT_PORT = 21
IMPLICIT_PORT = 990

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(value: Any, default: bool, name: str) -> bool:
    """Read a boolean extra strictly: ``"flase"`` must not silently turn verification off."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"connection extra {name!r} must be a boolean, got {value!r}")


class SessionReusingFTP_TLS(ftplib.FTP_TLS):  # noqa: N801  # mirrors the ftplib class name
    """``FTP_TLS`` that resumes the control session on data connections; optionally implicit.

    vsftpd and most hardened servers refuse data connections that do not resume the control
    connection's TLS session (it proves the data socket belongs to the same client).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        timeout: float = DEFAULT_TIMEOUT,
        implicit: bool = False,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(context=context, timeout=timeout, encoding=encoding)
        self.implicit = implicit

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        """Connect; in implicit mode wrap the socket in TLS before reading the banner.

        ``port`` lands on the instance (as in ``ftplib.FTP.connect``), never on the class.
        """
        if not self.implicit:
            return super().connect(host, port, timeout, source_address)
        if host != "":
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if self.timeout is not None and not self.timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if source_address is not None:
            self.source_address = source_address
        sys.audit("ftplib.connect", self, self.host, self.port)
        raw = socket.create_connection(
            (self.host, self.port), self.timeout, source_address=self.source_address
        )
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding, errors="surrogateescape")
        self.welcome = self.getresp()
        return self.welcome

    # Names on the wire are bytes: a name that is not valid in ``encoding`` (a cp1252 é on a
    # UTF-8 server) must not fail the whole listing (ftplib decodes strictly). Both channels
    # decode with surrogateescape; such a name is then recognised and ignored by its caller.

    def auth(self) -> str:
        resp = super().auth()
        assert self.sock is not None, "AUTH TLS on a closed connection"
        self.file = self.sock.makefile("r", encoding=self.encoding, errors="surrogateescape")
        return resp

    def retrlines(self, cmd: str, callback: Any = None) -> str:
        """ftplib's retrlines, decoding with surrogateescape."""
        if callback is None:
            callback = print  # ftplib's default (its print_line)
        self.sendcmd("TYPE A")
        with self.transfercmd(cmd) as conn, conn.makefile("r", encoding=self.encoding,
                                                          errors="surrogateescape") as fp:
            while True:
                line = fp.readline(self.maxline + 1)
                if len(line) > self.maxline:
                    raise ftplib.Error(f"got more than {self.maxline} bytes")  # noqa: S321 - TLS data channel
                if not line:
                    break
                callback(line.removesuffix("\n").removesuffix("\r"))
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        return self.voidresp()

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        """Open the data connection, resuming the control connection's TLS session."""
        # Skip FTP_TLS.ntransfercmd (it wraps without the session); take the plain socket.
        conn, size = super(ftplib.FTP_TLS, self).ntransfercmd(cmd, rest)
        if vars(self).get("_prot_p"):  # ftplib's PROT P flag (private, so not in its type stubs)
            control = self.sock
            session = control.session if isinstance(control, ssl.SSLSocket) else None
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            except BaseException:
                conn.close()
                raise
        return conn, size


class IcbFTPSHook(FailFastConnection, FTPSHook):
    """FTPS with per-connection port, CA file, timeout, implicit mode and TLS session reuse."""

    conn_name_attr = "ftp_conn_id"
    default_conn_name = "icb_ftps_default"
    conn_type = "icb_ftps"
    hook_name = "FTPS (icbridge)"

    def __init__(self, ftp_conn_id: str = default_conn_name) -> None:
        super().__init__(ftp_conn_id=ftp_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connections UI: no schema; show which extras exist and their defaults."""
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"login": "Username"},
            "placeholders": {
                "host": "ftps.biller.example",
                "port": f"{EXPLICIT_PORT} (explicit) or {IMPLICIT_PORT} (implicit)",
                "extra": json.dumps(
                    {
                        "ca_file": "/path/to/ca-bundle.pem",
                        "timeout": DEFAULT_TIMEOUT,
                        "implicit": False,
                        "passive": True,
                        "verify": True,
                    }
                ),
            },
        }

    @staticmethod
    def build_ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
        """Verifying context (hostname included); ``ca_file`` replaces the system store."""
        context = ssl.create_default_context(cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def get_conn(self) -> ftplib.FTP:
        """Log in over TLS (explicit or implicit) with ``PROT P``; cached until ``close_conn``."""
        if self.conn is not None:
            return self.conn
        params = self.get_connection(self.ftp_conn_id)
        extra = params.extra_dejson
        if not params.host:
            raise ValueError(f"connection {self.ftp_conn_id!r} has no host")
        implicit = parse_bool(extra.get("implicit"), False, "implicit")
        passive = parse_bool(extra.get("passive"), True, "passive")
        verify = parse_bool(extra.get("verify"), True, "verify")
        timeout = float(extra.get("timeout") or DEFAULT_TIMEOUT)
        if timeout <= 0:
            raise ValueError("connection extra 'timeout' must be positive")
        ca_file = extra.get("ca_file") or None
        if not verify:
            self.log.warning("TLS verification is OFF for %s: no protection against MITM", self.ftp_conn_id)
        self.encoding = extra.get("encoding") or None

        port = int(params.port) if params.port else (IMPLICIT_PORT if implicit else EXPLICIT_PORT)
        conn = SessionReusingFTP_TLS(
            context=self.build_ssl_context(ca_file, verify),
            timeout=timeout,
            implicit=implicit,
            encoding=self.encoding or "utf-8",
        )
        self.log.info(
            "Connecting via FTPS (%s) to %s:%d", "implicit" if implicit else "explicit", params.host, port
        )
        try:
            conn.connect(params.host, port)
            conn.login(params.login or "", params.password or "")
            conn.prot_p()  # without it ftplib sends file payloads in clear text
            conn.set_pasv(passive)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def close_conn(self) -> None:
        """QUIT politely, but always release the socket (a dead server must not raise here)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, EOFError, ftplib.Error):
            conn.close()

    def test_connection(self) -> tuple[bool, str]:
        """Log in, run PWD, and close: what the Connections UI "Test" button calls."""
        try:
            cwd = self.get_conn().pwd()
            return True, f"Connection successfully tested (cwd {cwd})"
        except Exception as exc:
            return False, str(exc)
        finally:
            self.close_conn()
