"""Common machinery of the Harris CIS simulators (inHance, AUS): endpoints, keys, SQLite state.

Why shared: both vendors' simulators need the same things — one or more endpoints per
biller, each with its own key (inHance rule 6), accounts, a record of every call received
(so tests can assert "nothing lost, nothing twice"), payments and customer changes
applied, and runtime fault injection (:mod:`icbsim.faults`). Each vendor module
only defines its handlers and result shapes.

Conventions (assumed, documented in docs/cis-services.md): a wrong key is a business
refusal "Invalid credentials" and nothing is applied; an unknown account is a business
refusal "Account not found" (AUS ResponseCode 1); refused calls are recorded in
``received()`` but not in ``payments()`` / ``changes()``.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from icbsim.cis_records import (  # re-exported: the simulators shared answers
    ACCOUNT_NOT_FOUND,
    CODE_BILL_NOT_FOUND,
    CODE_CREDENTIALS,
    CODE_INVALID,
    CODE_NOT_FOUND,
    CODE_OTHER,
    INVALID_CREDENTIALS,
    SCHEMA,
    Endpoint,
    Refusal,
    make_pdf,
)
from icbsim.faults import Faults
from icbsim.soapserver import SoapServer
from icbsim.values import money, sim_pragmas, stamp

__all__ = [
    "ACCOUNT_NOT_FOUND",
    "CODE_BILL_NOT_FOUND",
    "CODE_CREDENTIALS",
    "CODE_INVALID",
    "CODE_NOT_FOUND",
    "CODE_OTHER",
    "INVALID_CREDENTIALS",
    "CisSimulator",
    "Endpoint",
    "Refusal",
    "make_pdf",
]

_FLAG_FIELDS = ("paperless", "autopay")
_RECORD_BATCH = 256  # calls that changed nothing, recorded in one transaction (CisSimulator._record)


def _now() -> str:
    return stamp(datetime.now(UTC))


class CisSimulator:
    """Base of InhanceSimulator / AusSimulator. Subclasses set the class attributes and handlers."""

    WSDL: ClassVar[Path]
    SERVICE_FILE: ClassVar[str]  # last path segment, e.g. "iCloud.asmx"
    KEY_FIELDS: ClassVar[tuple[str, ...]]  # request elements holding the key (vendor casing)
    ACCOUNT_FIELDS: ClassVar[tuple[str, ...]] = ("AccountNumber", "Accountnumber")
    default_base_path: ClassVar[str]

    def __init__(self, db_path: Path, server: SoapServer | None = None, *, base_path: str | None = None) -> None:
        self.db_path = Path(db_path)
        self.base_path = "/" + (base_path or self.default_base_path).strip("/")
        self._own_server = server is None
        self.server = server if server is not None else SoapServer()
        self.faults = Faults()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        sim_pragmas(self._db)
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        self._unrecorded: list[tuple[Any, ...]] = []  # calls not yet in ``received`` (see _record)
        with self._tx() as db:
            db.executescript(SCHEMA)

    # to be defined by the vendor module ----------------------------------------------------

    def handlers(self) -> Mapping[str, Callable[[Endpoint, dict[str, Any]], Mapping[str, Any]]]:
        raise NotImplementedError

    def result(self, method: str, code: int, message: str, **values: Any) -> dict[str, Any]:
        """The method's Result in WSDL order; code 0 = success."""
        raise NotImplementedError

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> CisSimulator:
        if self._own_server:
            self.server.start()
        return self

    def stop(self) -> None:
        if self._own_server:
            self.server.stop()
        with self._lock:
            if self._unrecorded:  # the calls still waiting to be recorded (stop() may come twice)
                with self._db:
                    self._write_unrecorded()
            self._db.close()

    def __enter__(self) -> CisSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the simulator's lock; the calls waiting to be recorded are
        written first, so every reader (``received()`` …) sees every call, in call order."""
        with self._lock, self._db:
            self._write_unrecorded()
            yield self._db

    def _write_unrecorded(self) -> None:
        """INSERT the waiting calls into ``received`` (the caller holds the lock and commits)."""
        if not self._unrecorded:
            return
        rows, self._unrecorded = self._unrecorded, []
        self._db.executemany(
            "INSERT INTO received (biller, endpoint, method, account_number, args, ok, message, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (biller, path, method, account, json.dumps(args, default=str), ok, message, at)
                for biller, path, method, account, args, ok, message, at in rows
            ),
        )

    # endpoints ------------------------------------------------------------------------------

    def add_biller(self, biller: str, key: str) -> str:
        """Serve the biller's default endpoint (``{base_path}/{biller}/{SERVICE_FILE}``); returns its URL."""
        return self._add(biller, "default", f"{self.base_path}/{biller}/{self.SERVICE_FILE}", key)

    def add_endpoint(self, biller: str, name: str, key: str) -> str:
        """Serve another endpoint of the biller with its own key (``{base_path}/{biller}/{name}/...``)."""
        if name == "default":
            raise ValueError("use add_biller for the default endpoint")
        return self._add(biller, name, f"{self.base_path}/{biller}/{name}/{self.SERVICE_FILE}", key)

    def _add(self, biller: str, name: str, path: str, key: str) -> str:
        if not key:
            raise ValueError("an endpoint needs a key")
        endpoint = Endpoint(biller, name, path, key)
        handlers = {
            method: self.faults.wrap(
                method,
                (lambda args, _h=handler, _e=endpoint: _h(_e, args)),
                (lambda message, _m=method: self.result(_m, CODE_OTHER, message)),
            )
            for method, handler in self.handlers().items()
        }
        self.server.add_service(path, self.WSDL, handlers)
        self._endpoints[(biller, name)] = endpoint
        return self.server.service_url(path) if self._server_started() else path

    def _server_started(self) -> bool:
        try:
            _ = self.server.url
        except RuntimeError:
            return False
        return True

    def endpoint_path(self, biller: str, name: str = "default") -> str:
        return self._endpoints[(biller, name)].path

    def endpoint_url(self, biller: str, name: str = "default") -> str:
        """Full URL of an endpoint (the server must be started)."""
        return self.server.service_url(self.endpoint_path(biller, name))

    # seeding and inspection -----------------------------------------------------------------

    def add_account(
        self,
        biller: str,
        account_number: str,
        *,
        balance: Decimal | int | str = 0,
        future_balance: Decimal | int | str | None = None,
        past_due: Decimal | int | str = 0,
        email: str = "",
        phone: str = "",
        cash_only: bool = False,
        paperless: bool = False,
        autopay: bool = False,
        customer_name: str = "",
        customer_number: str = "",
        location_number: str = "",
    ) -> None:
        """Create or replace an account (future_balance defaults to balance)."""
        future = balance if future_balance is None else future_balance
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    biller,
                    account_number,
                    customer_name,
                    customer_number,
                    location_number,
                    str(money(balance)),
                    str(money(future)),
                    str(money(past_due)),
                    email,
                    phone,
                    int(cash_only),
                    int(paperless),
                    int(autopay),
                ),
            )

    def add_accounts(self, biller: str, accounts: Iterable[Mapping[str, Any]]) -> int:
        """Seed many accounts in one transaction (benchmarks: 250,000 in seconds). Each mapping has
        :meth:`add_account`'s keyword arguments plus ``account_number``. Returns the count."""
        rows = (
            (
                biller,
                a["account_number"],
                a.get("customer_name", ""),
                a.get("customer_number", ""),
                a.get("location_number", ""),
                str(money(a.get("balance", 0))),
                str(money(a.get("balance", 0) if a.get("future_balance") is None else a["future_balance"])),
                str(money(a.get("past_due", 0))),
                a.get("email", ""),
                a.get("phone", ""),
                int(bool(a.get("cash_only", False))),
                int(bool(a.get("paperless", False))),
                int(bool(a.get("autopay", False))),
            )
            for a in accounts
        )
        with self._tx() as db:
            cursor = db.executemany(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        return cursor.rowcount

    @staticmethod
    def _account_dict(r: sqlite3.Row) -> dict[str, Any]:
        out = {k: r[k] for k in r.keys() if k != "biller"}  # noqa: SIM118 - sqlite3.Row
        for k in ("balance", "future_balance", "past_due"):
            out[k] = Decimal(out[k])
        for k in ("cash_only", "paperless", "autopay"):
            out[k] = bool(out[k])
        return out

    def account(self, biller: str, account_number: str) -> dict[str, Any] | None:
        with self._tx() as db:
            r = db.execute(
                "SELECT * FROM accounts WHERE biller = ? AND account_number = ?", (biller, account_number)
            ).fetchone()
        return None if r is None else self._account_dict(r)

    def accounts(self, biller: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM accounts WHERE biller = ? ORDER BY account_number", (biller,)).fetchall()
        return [self._account_dict(r) for r in rows]

    def _select(self, table: str, biller: str | None, method: str | None = None) -> list[sqlite3.Row]:
        sql, params = f"SELECT * FROM {table} WHERE 1 = 1", []  # table names are ours, never a caller's
        if biller is not None:
            sql += " AND biller = ?"
            params.append(biller)
        if method is not None:
            sql += " AND method = ?"
            params.append(method)
        with self._tx() as db:
            return db.execute(sql + " ORDER BY id", params).fetchall()

    def received(self, biller: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """Every call that reached a handler (refused ones too), the key removed from ``args``."""
        return [
            {
                "id": r["id"],
                "biller": r["biller"],
                "endpoint": r["endpoint"],
                "method": r["method"],
                "account_number": r["account_number"],
                "args": json.loads(r["args"]),
                "ok": bool(r["ok"]),
                "message": r["message"],
                "received_at": datetime.fromisoformat(r["received_at"]),
            }
            for r in self._select("received", biller, method)
        ]

    def payments(self, biller: str | None = None) -> list[dict[str, Any]]:
        """Payments the CIS applied (accepted calls only)."""
        return [
            {
                "id": r["id"],
                "biller": r["biller"],
                "endpoint": r["endpoint"],
                "method": r["method"],
                "account_number": r["account_number"],
                "payment_date": datetime.fromisoformat(r["payment_date"]),
                "amount": Decimal(r["amount"]),
                "convenience_fee": Decimal(r["convenience_fee"]),
                "payment_type": r["payment_type"],
                "reference": r["reference"],
                "document_number": r["document_number"],
                "received_at": datetime.fromisoformat(r["received_at"]),
            }
            for r in self._select("payments", biller)
        ]

    def changes(self, biller: str | None = None) -> list[dict[str, Any]]:
        """Customer changes the CIS applied: field "paperless"/"autopay" (bool) or "email" (str)."""
        return [
            {
                "id": r["id"],
                "biller": r["biller"],
                "endpoint": r["endpoint"],
                "method": r["method"],
                "account_number": r["account_number"],
                "field": r["field"],
                "value": r["value"] == "1" if r["field"] in _FLAG_FIELDS else r["value"],
                "received_at": datetime.fromisoformat(r["received_at"]),
            }
            for r in self._select("changes", biller)
        ]

    # the common handler flow ----------------------------------------------------------------

    def serve(
        self,
        endpoint: Endpoint,
        method: str,
        args: dict[str, Any],
        apply: Callable[[sqlite3.Connection, sqlite3.Row | None, str], dict[str, Any]],
        *,
        needs_account: bool = True,
    ) -> dict[str, Any]:
        """Check the key, find the account, run ``apply`` in one transaction, record the call.

        ``apply(db, account_row, account_number)`` returns the success values or raises
        :class:`Refusal`; the call is recorded either way (the key never).
        """
        account_number = next((str(args[f]).strip() for f in self.ACCOUNT_FIELDS if args.get(f)), "")
        given = next((args[f] for f in self.KEY_FIELDS if args.get(f) is not None), "")
        public_args = {k: v for k, v in args.items() if k not in self.KEY_FIELDS}
        with self._lock:
            db = self._db
            try:
                if not hmac.compare_digest(str(given).encode(), endpoint.key.encode()):
                    raise Refusal(CODE_CREDENTIALS, INVALID_CREDENTIALS)
                row = db.execute(
                    "SELECT * FROM accounts WHERE biller = ? AND account_number = ?", (endpoint.biller, account_number)
                ).fetchone()
                if needs_account and row is None:
                    raise Refusal(CODE_NOT_FOUND, ACCOUNT_NOT_FOUND)
                values = apply(db, row, account_number)
                code, message = 0, ""
            except Refusal as refusal:
                values, code, message = {}, refusal.code, refusal.message
            except BaseException:
                db.rollback()  # nothing applied, nothing recorded (as the transaction did before)
                raise
            self._record(endpoint, method, account_number, public_args, code, message)
        return self.result(method, code, message, **values)

    def _record(
        self, endpoint: Endpoint, method: str, account_number: str, public_args: dict[str, Any], code: int, message: str
    ) -> None:
        """Record a call in ``received`` (caller holds the lock).

        Why not an INSERT and a COMMIT per call: at Balance All's scale (1,600 calls/s) that
        transaction, under the lock every handler thread needs, was a third of the simulator's
        work per read call. A call that changed nothing (BalanceCheck, GetAccountData, a refusal)
        waits in ``_unrecorded`` and is written with the next ``_RECORD_BATCH`` - 1 others, or by
        the next transaction of any kind (:meth:`_tx`: every reader), so nothing is lost or
        reordered as seen through this object. A call that wrote (a payment, a change) is
        recorded in its own transaction, as before.
        """
        self._unrecorded.append(
            (endpoint.biller, endpoint.path, method, account_number, public_args, int(code == 0), message, _now())
        )
        if self._db.in_transaction or len(self._unrecorded) >= _RECORD_BATCH:
            with self._db:
                self._write_unrecorded()

    @staticmethod
    def record_payment(
        db: sqlite3.Connection,
        endpoint: Endpoint,
        method: str,
        account_number: str,
        payment_date: datetime,
        amount: Decimal,
        fee: Decimal,
        payment_type: str,
        reference: str,
        document_number: str = "",
    ) -> int:
        cursor = db.execute(
            "INSERT INTO payments (biller, endpoint, method, account_number, payment_date, amount, convenience_fee,"
            " payment_type, reference, document_number, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                endpoint.biller,
                endpoint.path,
                method,
                account_number,
                stamp(payment_date),
                str(amount),
                str(fee),
                payment_type,
                reference,
                document_number,
                _now(),
            ),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def record_change(
        db: sqlite3.Connection, endpoint: Endpoint, method: str, account_number: str, field: str, value: bool | str
    ) -> None:
        text = ("1" if value else "0") if isinstance(value, bool) else value
        db.execute(
            "INSERT INTO changes (biller, endpoint, method, account_number, field, value, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (endpoint.biller, endpoint.path, method, account_number, field, text, _now()),
        )
        column = {"paperless": "paperless", "autopay": "autopay", "email": "email"}[field]
        db.execute(
            f"UPDATE accounts SET {column} = ? WHERE biller = ? AND account_number = ?",
            (int(value) if isinstance(value, bool) else value, endpoint.biller, account_number),
        )
