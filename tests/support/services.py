"""What tests need from the machine: the repository's root, whether CI is set, and the
services a test may require (PostgreSQL and Redis skip locally when absent, fail in CI).
Imported by test modules and conftests alike (a test module never imports a conftest)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ON_CI = bool(os.environ.get("CI"))


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a service the test needs is not reachable."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if ON_CI:
        pytest.fail(f"{message}, and CI is set: CI must run this test")
    pytest.skip(f"{message}; set up {name} or run in CI to include this test")


PG_URL = os.environ.get("ICBRIDGE_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A state-DB URL on a fresh PostgreSQL schema, dropped afterwards (skips without PostgreSQL)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"icb_test_{uuid.uuid4().hex[:10]}"
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def state_store(kind: str, tmp_path: Path, factory):
    """``factory(url)`` on a fresh state DB of ``kind`` (``sqlite``: a file; ``postgres``: a new
    schema, dropped afterwards), disposed after the block."""
    if kind == "sqlite":
        store = factory(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            yield store
        finally:
            store.dispose()
        return
    with postgres_schema() as url:
        store = factory(url)
        try:
            yield store
        finally:
            store.dispose()
