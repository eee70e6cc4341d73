"""Issue 27 item 2: a state DB that stops answering never hangs a task. PostgreSQL behind a
TCP proxy that, on command, stops forwarding without a reset (a partition: the proxy's kernel
still acknowledges everything) or resets every connection. The proxy is ours; the server,
libpq and psycopg2 are not."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from icbridge.state.payments import PaymentLedger
from tests.support.services import postgres_schema

PG = ("127.0.0.1", 5432)


class Proxy:
    """127.0.0.1:<port> -> PostgreSQL. ``blackhole()``: keep every socket open, forward nothing
    (new connections are accepted and left silent too); ``reset()``: RST every connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.silent = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(PG)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.silent.is_set():  # a partition: bytes are taken and go nowhere
                time.sleep(0.05)
                data = b""
            try:
                if data:
                    target.sendall(data)
            except OSError:
                return

    def blackhole(self) -> None:
        self.silent.set()

    def reset(self) -> None:
        with self.lock:
            for s in self.sockets:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
            self.sockets.clear()

    def stop_listening(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the accept() that close() alone leaves listening
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def close(self) -> None:
        self.stop_listening()
        self.reset()


@pytest.fixture
def behind_proxy(monkeypatch) -> Iterator[tuple[Proxy, str]]:
    monkeypatch.setenv("ICBRIDGE_STATE_DB_STATEMENT_TIMEOUT", "1")
    monkeypatch.setenv("ICBRIDGE_STATE_DB_CONNECT_TIMEOUT", "2")
    with postgres_schema() as url:
        proxy = Proxy()
        try:
            yield proxy, url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        finally:
            proxy.close()


def _timed(call) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - returned for the assertions
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def test_a_partition_fails_within_the_bound_naming_the_state_db(behind_proxy):
    proxy, url = behind_proxy
    ledger = PaymentLedger(url)
    try:
        assert ledger.statuses("b1", ["G-1"]) == {}  # through the proxy, pooled
        proxy.blackhole()
        took, error = _timed(lambda: ledger.statuses("b1", ["G-1"]))
        assert isinstance(error, OperationalError), error
        assert "the state DB did not answer within" in str(error)
        # bound: the pooled connection's ping (1 + 5 s) and, dropped, a new connection (2 s): never the
        # kernel's minutes; without the bound this call does not return at all while the partition lasts
        assert took < 15, took
    finally:
        proxy.silent.clear()
        ledger.dispose()


def test_a_partition_at_connect_fails_within_the_connect_bound(behind_proxy):
    proxy, url = behind_proxy
    proxy.blackhole()  # accepted, never answered: the start-up exchange hangs
    took, error = _timed(lambda: PaymentLedger(url))
    assert isinstance(error, OperationalError) and "did not answer within 2 s" in str(error), error
    assert took < 8, took
    proxy.silent.clear()


def test_a_reset_fails_at_once(behind_proxy):
    proxy, url = behind_proxy
    ledger = PaymentLedger(url)
    try:
        ledger.statuses("b1", ["G-1"])
        proxy.reset()
        proxy.stop_listening()  # and nothing listens any more
        took, error = _timed(lambda: ledger.statuses("b1", ["G-1"]))
        assert isinstance(error, OperationalError), error
        assert took < 5, took
    finally:
        ledger.dispose()
