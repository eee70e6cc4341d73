"""Open a ``RemoteFolder`` on an Airflow connection, over FTPS or SFTP.

Two thin adapters over Airflow hooks: ``IcbFTPSHook`` (ours, see hooks/ftps.py) and the
provider's ``SFTPHook``. The SFTP one keeps host key checking on: the connection must carry
the server's key in its ``host_key`` extra (or the key must be in known_hosts).
"""

from __future__ import annotations

import ftplib  # noqa: S402  # used with IcbFTPSHook's TLS connections only
import stat
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from airflow.providers.sftp.hooks.sftp import SFTPHook

from icbridge.hooks.ftps import IcbFTPSHook
from icbridge.transfer.remote import RemoteFolder, atomic_local_file, parse_list_line

__all__ = ["FTPSRemoteFolder", "SFTPRemoteFolder", "open_remote_folder"]

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
        self.hook = IcbFTPSHook(ftp_conn_id=conn_id)
        self._ftp = self.hook.get_conn()  # connect now: bad credentials/certs fail at open

    def list_names(self, directory: str) -> list[str]:
        # MLSD says what is a file; vsftpd lacks it, so fall back to parsing LIST.
        try:
            entries = list(self._ftp.mlsd(directory, facts=["type"]))
        except ftplib.error_perm as exc:
            if not str(exc).startswith(("500", "501", "502", "504")):
                raise
        else:
            return sorted(name for name, facts in entries if facts.get("type", "").lower() == "file")
        lines: list[str] = []
        self._ftp.retrlines(f"LIST {directory}", lines.append)
        parsed = (parse_list_line(line) for line in lines)
        return sorted(entry[0] for entry in parsed if entry is not None and entry[1])

    def rename(self, src: str, dst: str) -> None:
        self.hook.rename(src, dst)

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
                if not self._is_dir(path):
                    raise

    def _is_dir(self, path: str) -> bool:
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


class SFTPRemoteFolder(_HookFolder):
    """``RemoteFolder`` over the provider ``SFTPHook``, one SSH connection kept open."""

    def __init__(self, conn_id: str, connect_attempts: int = 3) -> None:
        # use_managed_conn=False: keep one SFTP session instead of reconnecting per call.
        self.hook = SFTPHook(
            ssh_conn_id=conn_id, use_managed_conn=False, conn_retry_attempts=connect_attempts
        )
        if self.hook.no_host_key_check:
            raise ValueError(
                f"connection {conn_id!r} disables host key checking; give its host_key extra instead"
            )
        self._sftp = self.hook.get_conn()

    def list_names(self, directory: str) -> list[str]:
        attrs = self.hook.list_directory_with_attr(directory)
        return sorted(a.filename for a in attrs if a.st_mode is not None and stat.S_ISREG(a.st_mode))

    def rename(self, src: str, dst: str) -> None:
        self._sftp.rename(src, dst)

    def delete(self, remote_path: str) -> None:
        self._sftp.remove(remote_path)

    def makedirs(self, directory: str) -> None:
        self.hook.create_directory(directory, mode=0o755)

    def size(self, remote_path: str) -> int:
        size = self._sftp.stat(remote_path).st_size
        if size is None:
            raise OSError(f"server gave no size for {remote_path!r}")
        return int(size)

    def close(self) -> None:
        self.hook.close_conn()
        client, self.hook.client = self.hook.client, None
        if client is not None:
            client.close()


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
