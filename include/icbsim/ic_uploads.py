"""UploadInvoiceFile of the Invoice Cloud simulator: decode, check (apart for a large file), queue to store.

The file is all-or-nothing (see :mod:`icbsim.invoice_cloud`). Its answer comes once it is
checked; its invoices are stored by the next read of the state (:class:`~icbsim.ic_store.IcStore`).
"""

from __future__ import annotations

import binascii
import csv
import hashlib
import multiprocessing
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pybase64

from icbridge.layouts.bif import registry
from icbridge.processes import workers_may_start
from icbsim.ic_bif import check_upload
from icbsim.ic_store import INVALID_CREDENTIALS, IcStore
from icbsim.values import arg_str, stamp

CHECK_APART_BYTES = 1 << 20  # a file this large is checked in a process of its own (_check_bif)


class IcUploads(IcStore):
    """CloudInvoicing.UploadInvoiceFile, its checker processes and its fault injection."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path)
        self._refusals: dict[str, str] = {}
        self._late_answers: dict[str, float] = {}
        self._checkers: ProcessPoolExecutor | None = None  # started by the first large upload
        self._stopped = False

    def refuse_once(self, file_name: str, message: str = "Simulated refusal") -> None:
        """Fault injection: the next UploadInvoiceFile of `file_name` answers Success=false."""
        with self._lock:
            self._refusals[file_name] = message

    def answer_late_once(self, file_name: str, seconds: float) -> None:
        """Fault injection: store the next upload of `file_name`, then answer only after `seconds`."""
        with self._lock:
            self._late_answers[file_name] = seconds

    def _stop_checkers(self) -> None:
        """No checker from now on (the simulator stops); the running ones are shut down."""
        with self._lock:
            self._stopped = True
            if self._checkers is not None:
                self._checkers.shutdown(cancel_futures=True)
                self._checkers = None

    @staticmethod
    def _upload_result(
        success: bool, message: str, file_id: str | None = None, accepted: int = 0, rejected: int = 0
    ) -> dict[str, Any]:
        return {
            "Success": success,
            "ErrorMessage": message,
            "FileID": file_id,
            "InvoicesAccepted": accepted,
            "InvoicesRejected": rejected,
        }

    def _check_bif(self, data: bytes, name: str) -> Callable[[], tuple[list[str], int]]:
        """Start the project's own pre-upload checks and the count of its IH rows
        (check_upload); the function returned waits for them. A large file is checked in a
        process of its own, meanwhile this thread goes on.

        IC is a web farm: files uploaded at once are checked at once. In this process, the
        checks of every file would take turns on one core (the regexes hold the GIL), which
        would make the simulator, not the client, what a client's concurrent uploads wait for.
        A file of CHECK_APART_BYTES or more is checked by one of two spawned processes
        (started by the first such file, stopped with the simulator); a smaller one here."""
        def here() -> tuple[list[str], int]:
            return check_upload(data, name)

        if len(data) < CHECK_APART_BYTES:
            return here
        checkers = None
        with self._lock:
            for _ in range(2):  # a pool whose checker died while idle is broken: new checkers, once
                if self._stopped:  # a request still being handled as the simulator stops
                    break
                checkers = self._checkers
                if checkers is None:
                    checkers = self._checkers = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
                try:
                    with workers_may_start():  # a checker never runs the __main__ of the process that starts it
                        future = checkers.submit(check_upload, data, name)
                    break
                except BrokenProcessPool:
                    self._forget_checkers(checkers)
                    checkers = None
        if checkers is None:
            return here

        def apart() -> tuple[list[str], int]:
            try:
                return future.result()
            except BrokenProcessPool:  # a checker died: this file is checked here, the next file by new ones
                with self._lock:
                    self._forget_checkers(checkers)
                return check_upload(data, name)

        return apart

    def _forget_checkers(self, checkers: ProcessPoolExecutor) -> None:
        if self._checkers is checkers:
            self._checkers = None
        checkers.shutdown(wait=False)

    def _upload_invoice_file(self, args: dict[str, Any]) -> dict[str, Any]:
        biller = self._auth(args, wait=False)
        if biller is None:
            return self._upload_result(False, INVALID_CREDENTIALS)
        name = arg_str(args, "FileName") or ""
        encoded = args.get("FileContent") or ""
        problems: list[str] = []
        try:
            # strict: only the base64 alphabet and its padding; SIMD, ~10x binascii on a 27 MB part
            data = pybase64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            data = b""
            problems.append("FileContent is not valid base64")
        if not name:
            problems.append("FileName is required")
        with self._lock:
            refusal = self._refusals.pop(name, None)
        if refusal:
            problems.append(refusal)
        if not data and not problems:
            problems.append("FileContent is empty")
        count = 0
        sha256 = hashlib.sha256(b"").hexdigest()
        if data:
            checked = self._check_bif(data, name or "BIF")  # a large file's checks run meanwhile
            sha256 = hashlib.sha256(data).hexdigest()
            fh_layout = registry()["FH"]
            first = re.match(rb"[^\r\n]*", data).group()
            try:
                fh = next(csv.reader([first.decode("utf-8")])) if first else []
            except UnicodeDecodeError:  # check_bif has said why
                fh = []
            found, count = checked()
            problems.extend(found)
            if fh[:1] == ["FH"] and len(fh) > fh_layout.index("BillerGuid"):
                fh_guid = fh[fh_layout.index("BillerGuid")].strip()
                if fh_guid.lower() != biller.lower():
                    problems.append(f"{name}: FH BillerGuid {fh_guid!r} is not the BillerGUID of this call")
        file_id = None if problems else str(uuid.uuid4())
        message = "; ".join(problems)
        with self._tx(wait=False) as db:  # queued in the same transaction: stored in upload order
            db.execute(
                "INSERT INTO uploads (file_id, biller, file_name, sha256, size, success, message, invoices,"
                " received_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    biller,
                    name,
                    sha256,
                    len(data),
                    int(not problems),
                    message,
                    0 if problems else count,
                    stamp(datetime.now(UTC)),
                    data,
                ),
            )
            if file_id is not None:
                self._to_store.append((biller, file_id))
        with self._lock:
            late = self._late_answers.pop(name, 0.0)
        if late:
            time.sleep(late)  # stored, but the answer reaches the client after its timeout
        if problems:
            return self._upload_result(False, message, None, 0, count)
        return self._upload_result(True, "", file_id, count, 0)
