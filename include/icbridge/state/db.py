"""The state database: what was uploaded, so nothing is uploaded twice.

SQLAlchemy Core on a SQLite file by default, PostgreSQL when ICBRIDGE_STATE_DB_URL (or the
Airflow connection the hooks resolve) says so. Tables are plain so ops and analysts can
query them with SQL.

Idempotency: a source file is keyed by (biller, file name, sha256). Its BIF parts are
uploaded one by one, each recorded `sending` before the call and `uploaded` / `refused`
after it, so a retry skips the parts already uploaded. A part left `sending` (the call went
out and no answer came back) is *in doubt*: it is never re-sent blindly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from icbridge.errors import StateError
from icbridge.state.engine import inserted_id, make_engine
from icbridge.state.locate import STATE_URL_ENV, default_state_path

metadata = MetaData()

source_files = Table(
    "icb_source_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    # processing | uploaded | rejected
    Column("status", String(16), nullable=False),
    Column("generation", Integer, nullable=False, default=1),  # +1 on each forced re-upload
    Column("reason", Text),
    Column("summary", JSON),
    Column("archived_to", String(512)),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(255)),
    UniqueConstraint("biller_id", "file_name", "sha256", name="uq_icb_source_file"),
)

invoice_uploads = Table(
    "icb_invoice_uploads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_file_id", Integer, ForeignKey("icb_source_files.id"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("part_index", Integer, nullable=False),
    Column("part_name", String(255), nullable=False),
    Column("part_sha256", String(64), nullable=False),
    Column("invoices", Integer, nullable=False),
    Column("total", String(32), nullable=False),
    # sending | uploaded | refused | not_sent
    Column("status", String(16), nullable=False),
    Column("ic_file_id", String(128)),
    Column("message", Text),
    Column("run_id", String(255)),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("answered_at", DateTime(timezone=True)),
    UniqueConstraint("source_file_id", "generation", "part_index", name="uq_icb_upload_part"),
)

def default_state_url() -> str:
    """ICBRIDGE_STATE_DB_URL, else a SQLite file under ICBRIDGE_HOME (default $AIRFLOW_HOME/icbridge),
    its folder made (a writer's default; icbridge.state.locate is the full rule)."""
    url = os.environ.get(STATE_URL_ENV)
    if url:
        return url
    path = default_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SourceFile:
    id: int
    biller_id: str
    file_name: str
    sha256: str
    status: str
    generation: int


class StateDbFailed(StateError):
    """The state DB failed after a peer answered: the answers are in the task log, the rows stay
    ``sending`` (in doubt for the next run). Never retried blindly by the task."""

    retry = True


class OwnerAlive(StateError, ValueError):
    """A person tried to settle a row whose sending execution is still alive (icbridge.state.executions)."""


class InDoubt(StateError):  # noqa: N818 - the ops word
    """A part was sent and no answer came back: it may or may not be in IC."""


class Ledger:
    """Upload ledger over the state DB. Every method is one short transaction."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        self.engine = make_engine(self.url)
        from icbridge.state.schema import ensure_schema  # it imports this module

        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # source files -----------------------------------------------------------------------
    def begin_file(
        self, biller_id: str, file_name: str, sha256: str, size: int, run_id: str, force: bool
    ) -> SourceFile:
        """The file's record, created on first sight. With `force`, an uploaded file starts a
        new generation, so every part is uploaded again (and recorded again). Two runs that
        see a new file at once both get its one record (the loser of the insert reads the
        winner's row)."""
        try:
            return self._begin_file(biller_id, file_name, sha256, size, run_id, force)
        except IntegrityError:  # another run inserted it between our read and our insert
            return self._begin_file(biller_id, file_name, sha256, size, run_id, force)

    def _begin_file(
        self, biller_id: str, file_name: str, sha256: str, size: int, run_id: str, force: bool
    ) -> SourceFile:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(source_files).where(
                    source_files.c.biller_id == biller_id,
                    source_files.c.file_name == file_name,
                    source_files.c.sha256 == sha256,
                )
            ).first()
            if row is None:
                stamp = now()
                result = conn.execute(
                    source_files.insert().values(
                        biller_id=biller_id,
                        file_name=file_name,
                        sha256=sha256,
                        size=size,
                        status="processing",
                        generation=1,
                        first_seen_at=stamp,
                        updated_at=stamp,
                        run_id=run_id,
                    )
                )
                return SourceFile(inserted_id(result), biller_id, file_name, sha256, "processing", 1)
            if force and row.status in ("uploaded", "rejected"):
                generation = row.generation + 1 if row.status == "uploaded" else row.generation
                conn.execute(
                    update(source_files)
                    .where(source_files.c.id == row.id)
                    .values(status="processing", generation=generation, updated_at=now(), run_id=run_id, reason=None)
                )
                return SourceFile(row.id, biller_id, file_name, sha256, "processing", generation)
            return SourceFile(row.id, biller_id, file_name, sha256, row.status, row.generation)

    def finish_file(self, file: SourceFile, status: str, *, reason: str | None = None, summary: dict | None = None,
                    archived_to: str | None = None) -> None:
        values = {"status": status, "updated_at": now(), "reason": reason}
        if summary is not None:
            values["summary"] = json.loads(json.dumps(summary, default=str))
        if archived_to is not None:
            values["archived_to"] = archived_to
        with self.engine.begin() as conn:
            conn.execute(update(source_files).where(source_files.c.id == file.id).values(**values))

    # parts ------------------------------------------------------------------------------
    def part_status(self, file: SourceFile, part_index: int) -> str | None:
        found = self.part_state(file, part_index)
        return None if found is None else found[0]

    def sending_parts(self, file: SourceFile) -> list[tuple[str, str | None]]:
        """(part name, owner token) of the file's parts left ``sending`` in its generation."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(invoice_uploads.c.part_name, invoice_uploads.c.run_id).where(
                    invoice_uploads.c.source_file_id == file.id,
                    invoice_uploads.c.generation == file.generation,
                    invoice_uploads.c.status == "sending",
                ).order_by(invoice_uploads.c.part_index)
            ).all()
        return [(r.part_name, r.run_id) for r in rows]

    def part_state(self, file: SourceFile, part_index: int) -> tuple[str, str | None] | None:
        """(status, owner token) of the part in the file's generation; None: never tried."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(invoice_uploads.c.status, invoice_uploads.c.run_id).where(
                    invoice_uploads.c.source_file_id == file.id,
                    invoice_uploads.c.generation == file.generation,
                    invoice_uploads.c.part_index == part_index,
                )
            ).first()
        return None if row is None else (row.status, row.run_id)

    def mark_sending(self, file: SourceFile, part_index: int, part_name: str, part_sha256: str, invoices: int,
                     total: str, run_id: str, *, force: bool = False) -> bool:
        """Claim the part for sending and record the attempt *before* the call, so a crash
        mid-call leaves a trace (in doubt). A claim, not an overwrite: only a part never tried,
        or last `not_sent` or `refused` (also `sending` with ``force``), is claimed; False when
        the part is `uploaded` or another run is sending it (two runs on one file: the part is
        then not sent by this one)."""
        values = {
            "part_name": part_name,
            "part_sha256": part_sha256,
            "invoices": invoices,
            "total": total,
            "status": "sending",
            "run_id": run_id,
            "sent_at": now(),
            "answered_at": None,
            "message": None,
            "ic_file_id": None,
        }
        key = (
            invoice_uploads.c.source_file_id == file.id,
            invoice_uploads.c.generation == file.generation,
            invoice_uploads.c.part_index == part_index,
        )
        from icbridge.state.executions import owner

        claimable = ("not_sent", "refused", "sending") if force else ("not_sent", "refused")
        try:
            with self.engine.begin() as conn:
                found = conn.execute(select(invoice_uploads.c.status, invoice_uploads.c.run_id).where(*key)).first()
                if found is not None:
                    if found.status == "sending" and found.run_id != run_id and owner(self.engine, found.run_id).alive:
                        return False  # force re-sends a part in doubt, never one a live run is sending
                    claimed = conn.execute(
                        update(invoice_uploads)
                        .where(*key, invoice_uploads.c.status.in_(claimable),
                               invoice_uploads.c.run_id.is_(None) if found.run_id is None
                               else invoice_uploads.c.run_id == found.run_id)
                        .values(**values)
                    )
                    return claimed.rowcount == 1
                conn.execute(
                    invoice_uploads.insert().values(
                        source_file_id=file.id, generation=file.generation, part_index=part_index, **values
                    )
                )
                return True
        except IntegrityError:  # another run inserted the part's row first: it is sending it
            return False

    def mark_part(self, file: SourceFile, part_index: int, status: str, *, ic_file_id: str | None = None,
                  message: str | None = None, run_id: str | None = None) -> bool:
        """IC's answer for a part. With ``run_id`` (the caller's token) only a row still
        ``sending`` and claimed by that caller changes: False when a person settled it or
        another run took it meanwhile (their record stands; the answer is in the task log)."""
        guard = () if run_id is None else (invoice_uploads.c.status == "sending", invoice_uploads.c.run_id == run_id)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(invoice_uploads)
                .where(
                    invoice_uploads.c.source_file_id == file.id,
                    invoice_uploads.c.generation == file.generation,
                    invoice_uploads.c.part_index == part_index,
                    *guard,
                )
                .values(status=status, ic_file_id=ic_file_id, message=message, answered_at=now())
            )
        return result.rowcount == 1

    def settle(self, biller_id: str, file_name: str, part_name: str, outcome: str, *, force: bool = False,
               by: str | None = None, reason: str | None = None) -> int:
        """Ops settle an in-doubt part: `uploaded` (IC has it) or `resend` (IC does not).
        Returns the number of parts changed. Raises :class:`OwnerAlive` when the execution
        that is sending the part is still running (its lease holds: it is waiting for IC and
        records the answer itself), unless ``force``."""
        from icbridge.state.executions import owner
        from icbridge.state.settlements import record

        if outcome not in ("uploaded", "resend"):
            raise ValueError("outcome must be 'uploaded' or 'resend'")
        if not (reason or "").strip():
            raise ValueError("a settlement needs a reason (what you checked in IC)")
        status = "uploaded" if outcome == "uploaded" else "not_sent"
        with self.engine.begin() as conn:
            found = conn.execute(
                select(invoice_uploads.c.id, invoice_uploads.c.run_id)
                .join(source_files, source_files.c.id == invoice_uploads.c.source_file_id)
                .where(
                    source_files.c.biller_id == biller_id,
                    source_files.c.file_name == file_name,
                    invoice_uploads.c.part_name == part_name,
                    invoice_uploads.c.status == "sending",
                    invoice_uploads.c.generation == source_files.c.generation,
                )
            ).all()
            for _, token in found:
                running = owner(self.engine, token)
                if running.alive and not force:
                    raise OwnerAlive(
                        f"{part_name} of {file_name} is being sent right now by {running.describe()}: that run "
                        "is waiting for IC and records the answer itself. Check that run first; settle only once "
                        "it has ended (or pass --force if you know it is dead)")
            ids = [i for i, _ in found]
            if ids:
                conn.execute(
                    update(invoice_uploads)
                    .where(invoice_uploads.c.id.in_(ids), invoice_uploads.c.status == "sending")
                    .values(status=status, answered_at=now(),
                            message=f"settled by ops as {outcome}" + (f" by {by}" if by else "")
                                    + (" (forced while its run was alive)" if force else ""))
                )
                record(conn, kind="upload", biller_id=biller_id, item=f"{file_name} {part_name}",
                       from_status="sending", to_status=status, by=by, reason=reason, forced=force)
            return len(ids)

    # reading ----------------------------------------------------------------------------
    def uploads(self, biller_id: str | None = None) -> list[dict]:
        """Every part upload with its source file, oldest first (for ops and tests)."""
        query = (
            select(
                source_files.c.biller_id,
                source_files.c.file_name,
                source_files.c.sha256,
                source_files.c.status.label("file_status"),
                invoice_uploads.c.generation,
                invoice_uploads.c.part_index,
                invoice_uploads.c.part_name,
                invoice_uploads.c.invoices,
                invoice_uploads.c.total,
                invoice_uploads.c.status,
                invoice_uploads.c.ic_file_id,
                invoice_uploads.c.message,
                invoice_uploads.c.run_id,
            )
            .join(source_files, source_files.c.id == invoice_uploads.c.source_file_id)
            .order_by(invoice_uploads.c.id)
        )
        if biller_id:
            query = query.where(source_files.c.biller_id == biller_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def files(self, biller_id: str | None = None) -> list[dict]:
        query = select(source_files).order_by(source_files.c.id)
        if biller_id:
            query = query.where(source_files.c.biller_id == biller_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
