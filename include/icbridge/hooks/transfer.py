"""Open a ``RemoteFolder`` on an Airflow connection, over FTPS or SFTP.

Two thin adapters over Airflow hooks: ``IcbFTPSHook`` (ours, see hooks/ftps.py) and the
provider's ``SFTPHook``. The SFTP one keeps host key checking on: the connection must carry
the server's key in its ``host_key`` extra (or the key must be in known_hosts).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ftplib  # noqa: S402  # used with IcbFTPSHook's TLS connections only
import hashlib
import json
import ssl
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from airflow.providers.sftp.hooks.sftp import SFTPHook
from airflow.sdk.exceptions import AirflowFailException

from icbridge.errors import TransferError
from icbridge.hooks.base import FailFastConnection
from icbridge.hooks.ftps import IcbFTPSHook
from icbridge.transfer.remote import RemoteFolder, atomic_local_file, plain_files

__all__ = ["FTPSRemoteFolder", "IcbSFTPHook", "SFTPRemoteFolder", "TransferRefused", "normalize_host_key",
           "open_remote_folder"]

PROTOCOLS = ("ftps", "sftp")


class _ClosingMixin:
    """``with open_remote_folder(...) as folder:`` closes the connection."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _HookFolder(_ClosingMixin):
    """Download and upload are the same on both provider hooks (retrieve_file / store_file)."""

    hook: Any

    def download(self, remote_path: str, local_path: Path) -> None:
        with atomic_local_file(local_path) as partial:
            self.hook.retrieve_file(remote_path, str(partial))

    def upload(self, local_path: Path, remote_path: str) -> None:
        self.hook.store_file(remote_path, str(local_path))


class FTPSRemoteFolder(_HookFolder):
    """``RemoteFolder`` over one logged-in ``IcbFTPSHook`` connection."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.hook = IcbFTPSHook(ftp_conn_id=conn_id)
        try:
            self._conn = self.hook.get_conn()  # connect now: bad credentials/certs fail at open
        except ftplib.error_perm as exc:
            if str(exc).startswith("530"):
                raise TransferRefused(f"{conn_id}: the server refused the login ({exc}); check the connection's "
                                      "login and password") from None
            raise
        except ssl.SSLCertVerificationError as exc:
            raise TransferRefused(f"{conn_id}: the server's TLS certificate is not trusted ({exc.verify_message}); "
                                  "check the connection's host and ca_file") from None

    @property
    def _ftp(self) -> ftplib.FTP:
        """The control connection, opened again if the server closed it while we mapped and
        uploaded (vsftpd idle_session_timeout, 300 s by default): a NOOP tells."""
        try:
            self._conn.voidcmd("NOOP")
        except (OSError, EOFError, ftplib.Error, ValueError, AttributeError):
            with contextlib.suppress(Exception):
                self._conn.close()
            self.hook.conn = None
            self._conn = self.hook.get_conn()
        return self._conn

    def download(self, remote_path: str, local_path: Path) -> None:
        self._ftp  # noqa: B018 - reconnect first if the server dropped us
        super().download(remote_path, local_path)

    def upload(self, local_path: Path, remote_path: str) -> None:
        self._ftp  # noqa: B018
        super().upload(local_path, remote_path)

    def list_names(self, directory: str) -> list[str]:
        """Plain files in ``directory``, names exactly as the server has them (a name that is
        not valid UTF-8 comes back with surrogate escapes, for the caller to ignore).

        MLSD says what is a file. vsftpd lacks it: then NLST gives the exact names (LIST's
        columns lose a name's leading blanks) and LIST says which of them are plain files."""
        try:
            entries = list(self._ftp.mlsd(directory, facts=["type"]))
        except ftplib.error_perm as exc:
            if not str(exc).startswith(("500", "501", "502", "504")):
                raise
        else:
            return sorted(name for name, facts in entries if facts.get("type", "").lower() == "file")
        try:
            listed = self._ftp.nlst(directory)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):  # some servers answer an empty folder so
                return []
            raise
        prefix = directory.rstrip("/") + "/"
        names = [n[len(prefix):] if n.startswith(prefix) else n for n in listed]
        lines: list[str] = []
        self._ftp.retrlines(f"LIST {directory}", lines.append)
        return sorted(plain_files(names, lines))

    def rename(self, src: str, dst: str) -> None:
        self._ftp.rename(src, dst)

    def delete(self, remote_path: str) -> None:
        self._ftp.delete(remote_path)

    def makedirs(self, directory: str) -> None:
        parts = [p for p in directory.split("/") if p]
        prefix = "/" if directory.startswith("/") else ""
        for depth in range(1, len(parts) + 1):
            path = prefix + "/".join(parts[:depth])
            try:
                self._ftp.mkd(path)
            except ftplib.error_perm:
                if not self.is_dir(path):
                    raise

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a folder on the server."""
        cwd = self._ftp.pwd()
        try:
            self._ftp.cwd(path)
        except ftplib.error_perm:
            return False
        self._ftp.cwd(cwd)
        return True

    def size(self, remote_path: str) -> int:
        # Binary type first: servers refuse or miscount SIZE in ASCII mode. The provider's
        # get_size() returns None for an empty file, hence ftplib directly.
        self._ftp.voidcmd("TYPE I")
        size = self._ftp.size(remote_path)
        if size is None:
            raise OSError(f"server gave no size for {remote_path!r}")
        return int(size)

    def close(self) -> None:
        self.hook.close_conn()


class TransferRefused(TransferError, AirflowFailException):
    """The server refused us for a reason no retry can fix (host key mismatch, bad
    credentials, an untrusted certificate): the task fails at once (no Airflow retry),
    naming what to fix."""


def normalize_host_key(text: str) -> str:
    """The ``host_key`` extra as the provider wants it (``<type> <base64>``) from the forms
    people paste: that form, a known_hosts / ``ssh-keyscan`` line (``[host]:port ssh-ed25519
    AAAA… [comment]``), or the bare base64 of a key (its type is read from the key itself).
    ValueError naming the accepted forms otherwise."""
    tokens = text.split()
    for i, token in enumerate(tokens[:-1]):
        if token.startswith(("ssh-", "ecdsa-sha2-")):
            return f"{token} {tokens[i + 1]}"
    if len(tokens) == 1:
        try:
            blob = base64.b64decode(tokens[0], validate=True)
            size = int.from_bytes(blob[:4], "big")
            key_type = blob[4 : 4 + size].decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            key_type = ""
        if key_type.startswith(("ssh-", "ecdsa-sha2-")):
            return f"{key_type} {tokens[0]}"
    raise ValueError(
        "host_key is not a public key: give `ssh-ed25519 AAAA…` (or ecdsa-sha2-nistp256 / ssh-rsa), a known_hosts "
        "line such as `[host]:2222 ssh-ed25519 AAAA…`, or the key's base64 (e.g. from `ssh-keyscan -t ed25519 host`)"
    )


def _fingerprint(key: Any) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class IcbSFTPHook(FailFastConnection, SFTPHook):
    """The provider's SFTPHook, taking ``host_key`` in the forms people paste (see
    :func:`normalize_host_key`); host-key checking stays on."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        conn = super().get_connection(conn_id)
        extra = conn.extra_dejson
        if extra.get("host_key"):
            extra["host_key"] = normalize_host_key(str(extra["host_key"]))
            conn.extra = json.dumps(extra)
        return conn


class SFTPRemoteFolder(_HookFolder):
    """``RemoteFolder`` over the provider ``SFTPHook``, one SSH connection kept open (and
    opened again when the server closed it while we mapped and uploaded)."""

    def __init__(self, conn_id: str, connect_attempts: int = 3) -> None:
        # use_managed_conn=False: keep one SFTP session instead of reconnecting per call;
        # conn_retry_attempts=1: our own loop retries only what a retry can fix
        self.conn_id = conn_id
        self.connect_attempts = connect_attempts
        self.hook = IcbSFTPHook(ssh_conn_id=conn_id, use_managed_conn=False, conn_retry_attempts=1)
        if self.hook.no_host_key_check:
            raise ValueError(
                f"connection {conn_id!r} disables host key checking; give its host_key extra instead"
            )
        self._sftp = self._connect()

    def _connect(self) -> Any:
        import paramiko

        for attempt in range(1, self.connect_attempts + 1):
            try:
                return self.hook.get_conn()
            except paramiko.BadHostKeyException as exc:
                raise TransferRefused(
                    f"{self.conn_id}: the host key of {exc.hostname} is not the one in the connection's host_key "
                    f"(server: {exc.key.get_name()} {_fingerprint(exc.key)}, expected: {exc.expected_key.get_name()} "
                    f"{_fingerprint(exc.expected_key)}). If the server's key really changed, put the new key in "
                    "host_key; otherwise someone may be in between."
                ) from None
            except paramiko.AuthenticationException as exc:
                raise TransferRefused(f"{self.conn_id}: the server refused the login ({exc}); check the "
                                      "connection's login, password or private_key") from None
            except (OSError, EOFError, paramiko.SSHException):
                self._drop()
                if attempt == self.connect_attempts:
                    raise
                time.sleep(min(2.0 * attempt, 5.0))
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self.hook.close_conn()
        client, self.hook.client = self.hook.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        self.hook.conn = None

    def _live(self) -> Any:
        """The SFTP session, opened again if the server closed it (idle timeout, ChannelTimeout)."""
        try:
            self._sftp.normalize(".")
        except Exception:  # noqa: BLE001 - any failure of the probe means: open it again
            self._drop()
            self._sftp = self._connect()
        return self._sftp

    def download(self, remote_path: str, local_path: Path) -> None:
        self._live()
        super().download(remote_path, local_path)

    def upload(self, local_path: Path, remote_path: str) -> None:
        self._live()
        super().upload(local_path, remote_path)

    def list_names(self, directory: str) -> list[str]:
        """Plain files in ``directory``; a name that is not valid UTF-8 comes back with
        surrogate escapes (paramiko decodes strictly, so one such name would fail the whole
        listing: this reads the names as bytes, as paramiko's listdir_attr does otherwise)."""
        return sorted(name for name, mode in _sftp_entries(self._live(), directory)
                      if mode is not None and stat.S_ISREG(mode))

    def rename(self, src: str, dst: str) -> None:
        self._live().rename(src, dst)

    def delete(self, remote_path: str) -> None:
        self._live().remove(remote_path)

    def makedirs(self, directory: str) -> None:
        self._live()
        self.hook.create_directory(directory, mode=0o755)

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a folder on the server."""
        try:
            mode = self._live().stat(path).st_mode
        except FileNotFoundError:
            return False
        return mode is not None and stat.S_ISDIR(mode)

    def size(self, remote_path: str) -> int:
        size = self._live().stat(remote_path).st_size
        if size is None:
            raise OSError(f"server gave no size for {remote_path!r}")
        return int(size)

    def close(self) -> None:
        self._drop()


def _sftp_entries(sftp: Any, directory: str) -> list[tuple[str, int | None]]:
    """(name, st_mode) of every entry but . and .. — paramiko's listdir_attr, names decoded
    with surrogateescape (uses paramiko's request layer: CMD_OPENDIR / READDIR / CLOSE)."""
    from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR, SFTPError
    from paramiko.sftp_attr import SFTPAttributes

    kind, msg = sftp._request(CMD_OPENDIR, sftp._adjust_cwd(directory))
    if kind != CMD_HANDLE:
        raise SFTPError("Expected handle")
    handle = msg.get_binary()
    entries: list[tuple[str, int | None]] = []
    try:
        while True:
            try:
                kind, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                name = msg.get_string().decode("utf-8", "surrogateescape")
                longname = msg.get_string().decode("utf-8", "surrogateescape")
                attrs = SFTPAttributes._from_msg(msg, name, longname)
                if name not in (".", ".."):
                    entries.append((name, attrs.st_mode))
    finally:
        sftp._request(CMD_CLOSE, handle)
    return entries


def open_remote_folder(protocol: str, conn_id: str, *, connect_attempts: int = 3) -> RemoteFolder:
    """Connect to ``conn_id`` and return a ``RemoteFolder`` (caller closes it).

    ``protocol``: ``"ftps"`` (IcbFTPSHook) or ``"sftp"`` (provider SFTPHook, host key checked).
    ``connect_attempts``: SFTP only, the provider's retry count (it sleeps 3-5 s between).
    """
    name = protocol.strip().lower()
    if name == "ftps":
        return FTPSRemoteFolder(conn_id)
    if name == "sftp":
        return SFTPRemoteFolder(conn_id, connect_attempts=connect_attempts)
    raise ValueError(f"unknown transfer protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
