"""An FTPS server for tests and demos that is as strict as the billers' vsftpd.

pyftpdlib's ``TLS_FTPHandler`` accepts a data connection with a fresh TLS session, so a
client that would fail against vsftpd (``require_ssl_reuse=YES``, its default) passes
against it. This server closes that gap: with ``require_session_reuse`` on, a data
connection whose TLS session is not a resumption of *this* control connection's session
gets ``522 SSL connection failed: session reuse required``, as vsftpd answers.

How reuse is tied to the control connection: every control connection gets its own
``SSL.Context`` (so its own session cache and ticket keys), and the data connection is
secured with that context. A data handshake can then only resume a session this control
connection issued, and ``SSL_session_reused`` tells whether it did.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib  # pyOpenSSL has no public session_reused()
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.handlers.ftps.data import TLS_DTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from icbsim.net import Lifecycle, check_loopback
from icbsim.tls import Pki

__all__ = ["SESSION_REUSE_REPLY", "FTPSServer"]

SESSION_REUSE_REPLY = "522 SSL connection failed: session reuse required"

_log = logging.getLogger(__name__)


def _quiet_pyftpdlib() -> None:
    """Give pyftpdlib's logger a handler so its IOLoop does not call ``config_logging()``.

    That function rewires process-wide logging (``logging.logThreads = False``, a stderr
    handler) the first time any loop runs without logging configured.
    """
    logger = logging.getLogger("pyftpdlib")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _session_reused(conn: SSL.Connection) -> bool:
    return bool(_ssl_lib.SSL_session_reused(conn._ssl))  # noqa: SLF001


class _ReuseCheckingDTPHandler(TLS_DTPHandler):
    """Data channel that refuses a TLS session not resumed from the control connection."""

    def handle_ssl_established(self) -> None:
        cmd = self.cmd_channel
        if cmd.require_session_reuse and not _session_reused(self.socket):
            cmd.respond(SESSION_REUSE_REPLY)
            cmd.log_cmd("PROT", "P", 522, "session reuse required")
            self._resp = ()  # no 226/426 on top of the 522
            self.close()

    def handle_read_event(self) -> None:  # DTPHandler aliases handle_read_event = handle_read
        super().handle_read_event()
        faults = self.cmd_channel.upload_faults
        if self.receive and faults and self.tot_bytes_received > faults[0]:
            faults.pop(0)  # one-shot: the upload dies here, as when a link drops
            _log.info("FTPS simulator: dropping the connection after %d bytes", self.tot_bytes_received)
            self.cmd_channel.close()


class _IcbTLSHandler(TLS_FTPHandler):
    """Control channel: one TLS context per connection, optional implicit TLS."""

    tls_control_required = True
    tls_data_required = True
    dtp_handler = _ReuseCheckingDTPHandler
    implicit_tls: ClassVar[bool] = False
    require_session_reuse: ClassVar[bool] = True
    upload_faults: ClassVar[list[int] | tuple[()]] = ()  # per server: FTPSServer.drop_next_upload
    _banner_sent = False

    @classmethod
    def _new_context(cls) -> SSL.Context:
        """A context like pyftpdlib's, but private to one control connection."""
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate_chain_file(cls.certfile)
        ctx.use_privatekey_file(cls.keyfile)
        ctx.set_options(cls.ssl_options)
        ctx.set_session_id(secrets.token_hex(16).encode())
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        return ctx

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        super().__init__(conn, server, ioloop)
        if self.connected:
            self.ssl_context = self._new_context()

    def handle(self) -> None:
        if self.implicit_tls:
            # TLS from the first byte; the 220 banner follows the handshake.
            self.secure_connection(self.ssl_context)
            return
        self._banner_sent = True
        super().handle()

    def handle_ssl_established(self) -> None:
        if self.implicit_tls and not self._banner_sent:
            self._banner_sent = True
            super().handle()


class FTPSServer(Lifecycle):
    """A pyftpdlib FTPS server on loopback, served from a background thread.

    Explicit TLS (``AUTH TLS``) by default, or implicit TLS; TLS is required on the control
    and the data channel. Use as a context manager, or call ``start()``/``stop()``.

    ``user`` logs in to ``root``; ``extra_users`` maps more user names to ``(password, home)``
    (one home per biller in the demo stack). A host other than loopback is refused unless
    ``allow_any_host=True`` is passed explicitly.
    """

    def __init__(
        self,
        root: Path,
        user: str,
        password: str,
        pki: Pki,
        implicit: bool = False,
        require_session_reuse: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        extra_users: Mapping[str, tuple[str, Path]] | None = None,
        allow_any_host: bool = False,
    ) -> None:
        check_loopback(host, allow_any_host)
        self.root = Path(root)
        self.user = user
        self.extra_users = {name: (password, Path(home)) for name, (password, home) in (extra_users or {}).items()}
        if user in self.extra_users:
            raise ValueError(f"user {user!r} is given twice")
        self.implicit = implicit
        self.require_session_reuse = require_session_reuse
        self.host = host
        self._requested_port = port
        self._password = password
        self._pki = pki
        self._server: FTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._upload_faults: list[int] = []  # see drop_next_upload()

    def _handler_class(self) -> type[_IcbTLSHandler]:
        """A handler subclass per server: pyftpdlib keeps TLS settings on the class."""
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self._password, str(self.root), perm="elradfmwMT")
        for name, (password, home) in self.extra_users.items():
            authorizer.add_user(name, password, str(home), perm="elradfmwMT")
        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "certfile": str(self._pki.server_cert),
            "keyfile": str(self._pki.server_key),
            "ssl_context": None,
            "implicit_tls": self.implicit,
            "require_session_reuse": self.require_session_reuse,
            "banner": "icbridge FTPS simulator ready.",
            "passive_ports": None,
            "timeout": 60,
            "upload_faults": self._upload_faults,
        }
        return type(f"_IcbTLSHandler_{id(self):x}", (_IcbTLSHandler,), attrs)

    def drop_next_upload(self, after_bytes: int) -> None:
        """Fault injection: the next upload that passes ``after_bytes`` loses its data and
        control connections (the partial file stays on disk), as on a dropped link."""
        self._upload_faults.append(after_bytes)

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("FTPSServer is not started")
        return int(self._server.address[1])

    def start(self) -> FTPSServer:
        """Bind, then serve from a daemon thread; returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("FTPSServer already started")
        self.root.mkdir(parents=True, exist_ok=True)
        for _, home in self.extra_users.values():
            home.mkdir(parents=True, exist_ok=True)
        _quiet_pyftpdlib()
        # Own IOLoop: the default is a process-wide singleton shared by every server.
        self._server = FTPServer((self.host, self._requested_port), self._handler_class(), ioloop=IOLoop())
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"ftps-sim-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        try:
            # ioloop.loop() rather than serve_forever(): the latter logs "starting" per call.
            while not self._stopping.is_set():
                server.ioloop.loop(timeout=0.05, blocking=False)
        except Exception:
            _log.exception("FTPS simulator loop failed")
        finally:
            # Closed from the loop's own thread: pyftpdlib's IOLoop is not thread-safe.
            server.close_all()

    def stop(self) -> None:
        """Close every socket (listener, control, data) and join the thread."""
        if self._server is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("FTPS simulator thread did not stop")
        self._thread = None
        self._server = None

