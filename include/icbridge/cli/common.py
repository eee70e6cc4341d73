"""What the commands share: dates on the command line, the one-line error, the state DB as
the DAGs find it, and who runs the command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import date
from typing import Any

__all__ = ["disposed", "error", "iso_date", "operator", "state_db"]


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def error(message: str) -> int:
    """One line on stderr (a multi-line message is joined), exit code 2."""
    print(" | ".join(line for line in str(message).splitlines() if line.strip()), file=sys.stderr)
    return 2


def state_db(args: argparse.Namespace) -> str:
    """The state DB's URL (``--db``, else as the DAGs find it), printed to stderr; SystemExit
    when it is a SQLite file that does not exist (a new empty DB would say "nothing recorded")."""
    from icbridge.state.locate import StateDb, locate_state_db

    found = StateDb(args.db, "--db") if args.db else locate_state_db(ask_airflow=bool(os.environ.get("AIRFLOW_HOME")))
    print(f"state DB: {found.describe()}", file=sys.stderr)
    path = found.sqlite_path
    if path is not None and not path.exists():
        raise SystemExit(error(
            f"no state DB at {path}: the DAGs write theirs where ICBRIDGE_STATE_DB_URL, the Airflow connection "
            "icbridge_state or AIRFLOW_HOME point; set the same here, or pass --db URL (the demo's is "
            "sqlite:///<checkout>/.demo/state.db)"))
    return found.url



@contextlib.contextmanager
def disposed(store: Any) -> Iterator[Any]:
    """A state-DB store, its engine disposed after the command."""
    try:
        yield store
    finally:
        store.dispose()


def operator() -> str:
    """Who runs this command, for the ledgers' "settled by" (the login name, else the uid)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
