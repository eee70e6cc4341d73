"""An SFTP server for tests and demos, on asyncssh in a background thread.

asyncssh starts in milliseconds on 127.0.0.1 and supports password and public-key auth,
so tests exercise the real provider ``SFTPHook`` (paramiko) with host key checking on,
against a server whose host key they know (``host_key_public``).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

import asyncssh

from icbsim.net import Lifecycle, check_loopback

__all__ = ["SFTPServer"]

_STOP_TIMEOUT = 5.0


class _AuthServer(asyncssh.SSHServer):
    """Per-connection auth: password from ``users``, keys from ``authorized_keys``."""

    def __init__(
        self,
        users: Mapping[str, str],
        authorized_keys: Mapping[str, list[str]],
        live: set[asyncssh.SSHServerConnection],
    ) -> None:
        self._users = users
        self._authorized_keys = authorized_keys
        self._live = live
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._live.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        keys = self._authorized_keys.get(username)
        if keys and self._conn is not None:
            self._conn.set_authorized_keys(asyncssh.import_authorized_keys("\n".join(keys) + "\n"))
        return True  # always authenticate; nobody gets in for free

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._users.get(username)
        if expected is None:
            return False
        return secrets.compare_digest(expected.encode(), password.encode())

    def public_key_auth_supported(self) -> bool:
        return True


class _FaultySFTPSession(asyncssh.SFTPServer):
    """An SFTP session that can drop the connection mid-upload (SFTPServer.drop_next_upload)."""

    def __init__(self, chan: asyncssh.SSHServerChannel, chroot: bytes, upload_faults: list[int]) -> None:
        super().__init__(chan, chroot=chroot)
        self._upload_faults = upload_faults

    def write(self, file_obj: object, offset: int, data: bytes) -> int:  # type: ignore[override]
        faults = self._upload_faults
        if faults and offset + len(data) > faults[0]:
            faults.pop(0)  # one-shot: the link drops before this chunk is written
            self.connection.abort()
            raise asyncssh.SFTPConnectionLost("simulated connection drop")
        return super().write(file_obj, offset, data)  # type: ignore[return-value]


class SFTPServer(Lifecycle):
    """asyncssh SFTP server chrooted to ``root``; its event loop runs in its own thread.

    ``host_key_path``: an existing OpenSSH private key is loaded; a missing path gets a new
    ed25519 key written to it (stable across restarts); ``None`` keeps a fresh key in memory.
    ``homes``: a chroot per user (default: ``root`` for every user). A host other than
    loopback is refused unless ``allow_any_host=True`` is passed explicitly.
    """

    def __init__(
        self,
        root: Path,
        users: dict[str, str],
        authorized_keys: dict[str, list[str]] | None = None,
        host_key_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        homes: Mapping[str, Path] | None = None,
        allow_any_host: bool = False,
    ) -> None:
        check_loopback(host, allow_any_host)
        self.root = Path(root)
        self.homes = {user: Path(home) for user, home in (homes or {}).items()}
        self.host = host
        self._requested_port = port
        self._users = dict(users)
        self._authorized_keys = {user: list(keys) for user, keys in (authorized_keys or {}).items()}
        self._host_key = self._load_host_key(host_key_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._port: int | None = None
        self._upload_faults: list[int] = []  # see drop_next_upload()

    @staticmethod
    def _load_host_key(path: Path | None) -> asyncssh.SSHKey:
        if path is not None and Path(path).is_file():
            return asyncssh.read_private_key(str(path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch(mode=0o600)
            key.write_private_key(str(path))
        return key

    def drop_next_upload(self, after_bytes: int) -> None:
        """Fault injection: the next upload that passes ``after_bytes`` loses its connection
        (what was written so far stays on disk), as on a dropped link."""
        self._upload_faults.append(after_bytes)

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("SFTPServer is not started")
        return self._port

    @property
    def host_key_public(self) -> str:
        """``"ssh-ed25519 AAAA..."``: what the SFTP connection's ``host_key`` extra expects."""
        line = self._host_key.export_public_key("openssh").decode().split()
        return f"{line[0]} {line[1]}"

    def start(self) -> SFTPServer:
        """Start the loop thread and listen; returns self once the port is bound."""
        if self._loop is not None:
            raise RuntimeError("SFTPServer already started")
        self.root.mkdir(parents=True, exist_ok=True)
        for home in self.homes.values():
            home.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="sftp-sim", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=_STOP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        live = self._live
        users, keys = self._users, self._authorized_keys
        self._acceptor = await asyncssh.create_server(
            lambda: _AuthServer(users, keys, live),
            self.host,
            self._requested_port,
            server_host_keys=[self._host_key],
            sftp_factory=self._sftp_session,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
        )
        self._port = self._acceptor.get_port()

    def _sftp_session(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        """An SFTP session chrooted to the logged-in user's home (``root`` by default)."""
        home = self.homes.get(chan.get_extra_info("username"), self.root)
        return _FaultySFTPSession(chan, str(home).encode(), self._upload_faults)

    async def _shutdown(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        conns = list(self._live)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(conn.wait_closed()) for conn in conns], timeout=_STOP_TIMEOUT
            )
        if self._acceptor is not None:
            await asyncio.wait_for(self._acceptor.wait_closed(), timeout=_STOP_TIMEOUT)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close live connections, cancel tasks, stop the loop and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=2 * _STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=_STOP_TIMEOUT)
                if thread.is_alive():
                    raise RuntimeError("SFTP simulator thread did not stop")
            self._loop = self._thread = self._acceptor = None
            self._port = None
            self._live.clear()

