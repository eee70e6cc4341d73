"""A local SMTP server for tests and the demo, on aiosmtpd, keeping what it receives.

Why not a mock: the payment export's email delivery goes through the provider's SmtpHook
and smtplib for real (STARTTLS, login, DATA), and the tests read the attachment back from
here. Binds 127.0.0.1 (port 0 = a free one) unless told otherwise; with a ``pki`` it offers
STARTTLS with the test CA's certificate and requires it before AUTH and mail.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from icbsim.net import Lifecycle, check_loopback
from icbsim.tls import Pki

__all__ = ["ReceivedMail", "SMTPServer"]

_TIMEOUT = 5.0


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server took it: envelope and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    login: str | None = None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)  # type: ignore[return-value]

    def attachments(self) -> dict[str, bytes]:
        """file name -> exact bytes of every attachment."""
        return {
            part.get_filename(): part.get_payload(decode=True)
            for part in self.message.iter_attachments()
            if part.get_filename()
        }


@dataclass
class _Handler:
    received: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse: list[str] = field(default_factory=list)  # replies for the next DATA commands

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        with self.lock:
            if self.refuse:
                return self.refuse.pop(0)
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            self.received.append(
                ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(envelope.content or b""), login)
            )
        return "250 OK"


class SMTPServer(Lifecycle):
    """aiosmtpd in a background event loop. ``users``: login -> password (AUTH required when
    given); ``pki``: offer and require STARTTLS."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        pki: Pki | None = None,
        allow_any_host: bool = False,
    ) -> None:
        check_loopback(host, allow_any_host)
        self.host = host
        self._requested_port = port
        self._users = dict(users or {})
        self._pki = pki
        self._handler = _Handler()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SMTPServer is not started")
        return self._port

    @property
    def received(self) -> list[ReceivedMail]:
        """Every message accepted so far, oldest first (a copy)."""
        with self._handler.lock:
            return list(self._handler.received)

    def refuse_next(self, reply: str = "451 4.3.0 Simulated outage, try again later") -> None:
        """Answer the next DATA with ``reply`` instead of accepting it (fault injection)."""
        with self._handler.lock:
            self._handler.refuse.append(reply)

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._pki is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self._pki.server_cert), str(self._pki.server_key))
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self._users.get(data.login.decode(errors="replace"))
        ok = expected is not None and secrets.compare_digest(expected.encode(), data.password)
        return AuthResult(success=ok, auth_data=data if ok else None)

    def _factory(self) -> SMTP:
        tls = self._tls_context()
        return SMTP(
            self._handler,
            hostname="icbridge-smtp-sim",
            tls_context=tls,
            require_starttls=tls is not None,
            auth_required=bool(self._users),
            auth_require_tls=tls is not None,
            authenticator=self._authenticate if self._users else None,
            timeout=60,
        )

    def start(self) -> SMTPServer:
        if self._loop is not None:
            raise RuntimeError("SMTPServer already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="smtp-sim", daemon=True)
        self._thread.start()

        async def listen() -> None:
            self._server = await loop.create_server(self._factory, self.host, self._requested_port)
            self._port = int(self._server.sockets[0].getsockname()[1])

        try:
            asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the listener and live sessions, stop the loop, join the thread; safe twice."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None:
            return

        async def shutdown() -> None:
            if server is not None:
                server.close()
                server.close_clients() if hasattr(server, "close_clients") else None
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=_TIMEOUT)
            loop.close()
            self._loop = self._thread = self._server = None
            self._port = None
