"""The AUS invoice flow, without Airflow: find files, download, map, check, upload, archive.

The Airflow operators call these with real hooks (icbridge.operators.invoices); tests and
the CLI can call them with any RemoteFolder and uploader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from icbridge.config.biller import BillerConfig
from icbridge.errors import FlowError
from icbridge.exports import rejects_csv
from icbridge.layouts.aus import FileRejected, IncompleteFile, parse_file_name
from icbridge.mapping.aus_to_bif import BifPart, MapResult, map_aus
from icbridge.masking import mask_account
from icbridge.soap.errors import NotSent
from icbridge.state.db import InDoubt, Ledger, SourceFile
from icbridge.state.executions import owner
from icbridge.transfer.remote import RemoteFolder

log = logging.getLogger(__name__)


class UploadRefused(FlowError):  # noqa: N818
    """IC answered Success=false: the file is wrong, a retry would not help."""


@dataclass(frozen=True)
class UploadAnswer:
    success: bool
    message: str = ""
    file_id: str | None = None
    accepted: int | None = None


Uploader = Callable[[str, bytes], UploadAnswer]


@dataclass
class Discovery:
    files: list[str]
    ignored: list[tuple[str, str]] = field(default_factory=list)


def find_files(folder: RemoteFolder, biller: BillerConfig) -> Discovery:
    """The biller's files in its inbox, oldest stamp first; every other name ignored with a reason."""
    inv = biller.invoices_config()
    found, ignored = [], []
    for name in folder.list_names(inv.transfer.inbox):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept as surrogate escapes
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            ignored.append((shown, "name is not valid UTF-8 (bytes shown escaped): not a biller file"))
            continue
        parsed = parse_file_name(name)
        if parsed is None:
            ignored.append((name, "name does not follow {BID}_{STAMP}_{BillType}.TXT"))
        elif parsed.bid != biller.bid:
            ignored.append((name, f"BID {parsed.bid} is not this biller's ({biller.bid})"))
        elif inv.bill_types and parsed.bill_type not in inv.bill_types:
            ignored.append((name, f"bill type {parsed.bill_type} not in {inv.bill_types}"))
        else:
            found.append((parsed.stamp, name))
    return Discovery([name for _, name in sorted(found)], ignored)


@dataclass
class FileOutcome:
    file_name: str
    status: str  # uploaded | skipped (already uploaded) | empty
    summary: dict
    uploaded_parts: list[str] = field(default_factory=list)
    skipped_parts: list[str] = field(default_factory=list)
    archived_to: str | None = None
    artifacts: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage: download, map, upload, archive


def process_file(
    *,
    file_name: str,
    folder: RemoteFolder,
    uploader: Uploader,
    ledger: Ledger,
    biller: BillerConfig,
    biller_guid: str,
    workdir: Path,
    artifacts_dir: Path,
    run_id: str,
    today: date,
    force: bool = False,
) -> FileOutcome:
    """Download, map, check, upload each part once, archive. Raises FileRejected (with the
    rule), IncompleteFile (trailer missing: retry later), InDoubt, UploadRefused or NotSent."""
    transfer = biller.invoices_config().transfer
    remote_path = f"{transfer.inbox.rstrip('/')}/{file_name}"
    local = workdir / file_name
    clock = _Stages()
    try:
        with clock("download"):
            folder.download(remote_path, local)
    except Exception:
        if file_name in folder.list_names(transfer.inbox):
            raise
        # a concurrent run (e.g. a backfill running several at once) took and archived it
        log.info("%s is no longer in the inbox (processed by another run): skipped", file_name)
        return FileOutcome(file_name, "skipped", {"reason": "no longer in the inbox"})
    with local.open("rb") as f:  # the file is mapped from disk by ranges: never held whole
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    record = ledger.begin_file(biller.biller_id, file_name, sha256, local.stat().st_size, run_id, force)
    if record.status == "uploaded":
        log.info("%s (sha256 %s…) was uploaded before: not uploading again", file_name, sha256[:12])
        archived = archive(folder, transfer, file_name, sha256)
        ledger.finish_file(record, "uploaded", archived_to=archived)
        return FileOutcome(file_name, "skipped", {"reason": "already uploaded"}, archived_to=archived)

    if not force:  # a retry that can only end in doubt ends now, not after mapping the file again
        stop_for_sending(ledger, record, ledger.sending_parts(record), run_id=run_id, biller_id=biller.biller_id)
    out_dir = workdir / "bif"
    try:
        with clock("map"):
            result = map_aus(local, file_name, biller.invoice_settings(biller_guid), out_dir, today)
    except IncompleteFile:
        raise  # not recorded as rejected: the same name may complete later
    except FileRejected as exc:
        ledger.finish_file(record, "rejected", reason=str(exc))
        raise
    run_artifacts = write_artifacts(result, artifacts_dir)
    log_summary(result)

    outcome = FileOutcome(file_name, "uploaded", result.summary(), artifacts=str(run_artifacts), seconds=clock.seconds)
    with clock("upload"):
        upload_parts(result.bifs, record, ledger, uploader, outcome, run_id=run_id, force=force,
                     in_flight=biller.invoices_config().upload_in_flight, biller_id=biller.biller_id)

    with clock("archive"):
        outcome.archived_to = archive(folder, transfer, file_name, sha256)
    if not result.bifs:
        outcome.status = "empty"
    log.info("%s: %s", file_name, ", ".join(f"{stage} {s:.1f} s" for stage, s in clock.seconds.items()))
    ledger.finish_file(record, "uploaded", summary=outcome.summary, archived_to=outcome.archived_to)
    return outcome


def upload_parts(
    parts: list[BifPart],
    record: SourceFile,
    ledger: Ledger,
    uploader: Uploader,
    outcome: FileOutcome,
    *,
    run_id: str,
    force: bool,
    in_flight: int,
    biller_id: str,
) -> None:
    """Send each part of a file once, ``in_flight`` at a time, and record every answer.

    Before anything is sent: a part already ``uploaded`` is skipped; parts left ``sending`` by
    an earlier attempt (in doubt) stop the file with InDoubt naming all of them, unless
    ``force``. Each part is marked ``sending`` before its call; each answer is recorded as soon
    as it is in hand (``uploaded`` / ``refused`` / ``not_sent``; no answer, or one that cannot
    be judged, leaves the part ``sending``). Once any failure is known no new part starts; the
    parts already in flight are awaited and recorded, also when the loop is left by an error
    of its own (the ledger, a signal). Then, by what the failures need: InDoubt naming every
    part in doubt (and any refused), else UploadRefused naming every refused part, else the
    first NotSent (the task retries: those parts were never sent). The ledger is written from
    the calling thread only; the uploader runs in up to ``in_flight`` threads.
    """
    todo: list[tuple[int, BifPart]] = []
    sending: list[tuple[str, str | None]] = []
    for index, part in enumerate(parts, start=1):
        status, token = ledger.part_state(record, index) or (None, None)
        if status == "uploaded":
            log.info("part %s already uploaded: skipped", part.name)
            outcome.skipped_parts.append(part.name)
        elif status == "sending" and (not force or (token != run_id and owner(ledger.engine, token).alive)):
            sending.append((part.name, token))  # force re-sends a part in doubt, never one a live run is sending
        else:
            todo.append((index, part))
    stop_for_sending(ledger, record, sending, run_id=run_id, biller_id=biller_id)
    slots = max(1, in_flight)
    flying: dict[Future[UploadAnswer], tuple[int, BifPart]] = {}
    failed: dict[int, tuple[str, BifPart, BaseException]] = {}  # by part index: (not_sent|refused|in_doubt, ...)
    uploaded: dict[int, str] = {}

    def settle(future: Future[UploadAnswer]) -> None:
        """Record one answer in hand (the failure is noted before the ledger is written)."""
        index, part = flying.pop(future)
        try:
            answer = future.result()
            if not isinstance(answer, UploadAnswer) or not isinstance(answer.success, bool):
                raise TypeError(f"the uploader's answer cannot be judged: {answer!r}")
        except NotSent as exc:
            failed[index] = ("not_sent", part, exc)
            log.warning("part %s not sent: %s", part.name, exc)
            ledger.mark_part(record, index, "not_sent", message=str(exc), run_id=run_id)
            return
        except Exception as exc:  # no answer, or one that cannot be judged: stays `sending`
            failed[index] = ("in_doubt", part, exc)
            log.error("part %s: IC's answer cannot be judged, in doubt: %s", part.name, exc)
            return
        if not answer.success:
            failed[index] = ("refused", part, UploadRefused(f"{part.name}: {answer.message or '(no message)'}"))
            log.error("IC refused %s: %s", part.name, answer.message)
            ledger.mark_part(record, index, "refused", message=answer.message, run_id=run_id)
            return
        if not ledger.mark_part(record, index, "uploaded", ic_file_id=answer.file_id,
                                message=answer.message or None, run_id=run_id):
            log.error("part %s: IC accepted it (FileID %s) but its ledger row was settled or taken meanwhile: "
                      "that record stands; this answer is only in this log", part.name, answer.file_id)
        uploaded[index] = part.name
        log.info("uploaded %s: %d invoices, total %.2f, IC FileID %s", part.name, part.invoices, part.total,
                 answer.file_id)

    waiting = iter(todo)
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="icb-upload") as pool:
        left_by: BaseException | None = None
        try:
            while True:
                for future in sorted((f for f in flying if f.done()), key=lambda f: flying[f][0]):
                    settle(future)  # every answer in hand, before deciding to start another part
                if not failed and len(flying) < slots and (nxt := next(waiting, None)) is not None:
                    index, part = nxt
                    if ledger.mark_sending(record, index, part.name, part.sha256, part.invoices,
                                           f"{part.total:.2f}", run_id, force=force):
                        flying[pool.submit(_send, uploader, part)] = (index, part)
                    else:  # another run on the same file took it since the scan above
                        _, token = ledger.part_state(record, index) or (None, None)
                        holder = owner(ledger.engine, token).describe()
                        failed[index] = ("taken", part, InDoubt(f"{part.name} ({holder})"))
                        log.error("part %s is being sent (or was sent) by %s: not sent by this one", part.name,
                                  holder)
                    continue
                if not flying:
                    break
                wait(flying, return_when=FIRST_COMPLETED)
        except BaseException as exc:
            left_by = exc
            raise
        finally:
            if flying:  # left early: the calls out are awaited and what they answered is recorded
                wait(flying)
                for future in sorted(flying, key=lambda f: flying[f][0]):
                    name = flying[future][1].name
                    try:
                        settle(future)
                    except BaseException:  # the others are still recorded; what left the loop is raised
                        log.exception("the answer to %s could not be recorded: it stays `sending` (in doubt)", name)
            if isinstance(left_by, Exception) and any(kind != "not_sent" for kind, _, _ in failed.values()):
                # a refusal or a doubt is known: the task must not end on an error Airflow retries
                raise _failure(record.file_name, biller_id, [failed[i] for i in sorted(failed)]) from left_by
    outcome.uploaded_parts.extend(uploaded[i] for i in sorted(uploaded))
    if failed:
        raise _failure(record.file_name, biller_id, [failed[i] for i in sorted(failed)])


def stop_for_sending(ledger: Ledger, record: SourceFile, sending: list[tuple[str, str | None]], *, run_id: str,
                     biller_id: str) -> None:
    """Stop the file when parts are left ``sending`` (``(part name, owner token)``): being sent by
    another execution still alive (name it: that run records IC's answer), else in doubt (a
    person settles them). Nothing to stop for: returns."""
    elsewhere, in_doubt = [], []
    for name, token in sending:
        running = owner(ledger.engine, token)
        if running.alive and token != run_id:
            elsewhere.append(f"{name} ({running.describe()})")
        else:
            in_doubt.append(name)
    if elsewhere:
        raise InDoubt(
            f"{record.file_name}: {len(elsewhere)} part(s) are being sent by another run right now, not by this "
            f"one: {'; '.join(elsewhere)}. That run records what IC answers: check that run, then re-run this one "
            "(what it uploaded is skipped); do not settle them while it runs (docs/operations.md)"
        )
    if in_doubt:
        raise InDoubt(
            f"{record.file_name}: {len(in_doubt)} part(s) sent in an earlier attempt got no answer and may be in "
            f"IC: {', '.join(in_doubt)}. {_SETTLE.format(biller=biller_id, file=record.file_name)}"
        )


_SETTLE = ("Check IC, then settle each: `python -m icbridge ledger settle --biller {biller} --file {file} --part "
           "<part> --as uploaded|resend --reason '<what IC shows>'`, or re-run with force=true")


def _failure(file_name: str, biller_id: str, failures: list[tuple[str, BifPart, BaseException]]) -> BaseException:
    """The error a file's failed parts (in part order) end the task with: in doubt is final and
    needs a person, a refusal is final, a part not sent is retried."""
    by_kind: dict[str, list[tuple[BifPart, BaseException]]] = {}
    for kind, part, exc in failures:
        by_kind.setdefault(kind, []).append((part, exc))
    refused = "; ".join(f"IC refused {exc}" for _, exc in by_kind.get("refused", []))
    unsent = ", ".join(p.name for p, _ in by_kind.get("not_sent", []))
    taken = ", ".join(str(exc) for _, exc in by_kind.get("taken", []))
    others = "".join([f"; {refused}" if refused else "", f"; not sent: {unsent}" if unsent else "",
                      f"; being sent by another run, not by this one: {taken}" if taken else ""])
    if "in_doubt" in by_kind:
        doubtful = by_kind["in_doubt"]
        error = InDoubt(
            f"{file_name}: IC's answer to {', '.join(p.name for p, _ in doubtful)} cannot be judged "
            f"({'; '.join(str(exc) for _, exc in doubtful)}): in doubt, not sent again until settled. "
            f"{_SETTLE.format(biller=biller_id, file=file_name)}{others}"
        )
        error.__cause__ = doubtful[0][1]
        return error
    if refused:
        return UploadRefused(f"{file_name}: {others[2:]}")
    if taken:
        return InDoubt(f"{file_name}: {others[2:]}; that run records what IC answers: check that run, do not "
                       "settle these parts while it runs (docs/operations.md)")
    return by_kind["not_sent"][0][1]


def _send(uploader: Uploader, part: BifPart) -> UploadAnswer:
    try:
        content = part.path.read_bytes()
    except (OSError, MemoryError) as exc:  # before any call: nothing went out
        raise NotSent(f"{part.name} could not be read: {exc}") from exc
    return uploader(part.name, content)


class _Stages:
    """Wall seconds spent in each stage of a file (a stage entered again adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 3)


def archive(folder: RemoteFolder, transfer, file_name: str, sha256: str) -> str | None:
    """Move the processed file to the archive folder and return where it went.

    ``archive/NAME``; when a copy of that name is there already, ``archive/NAME.<sha12>.<ext>``
    (the name says which bytes). When that too is there (a third copy with the same bytes),
    the archive already holds these bytes: the inbox copy is removed, once the sizes agree;
    if they do not, the next free ``NAME.<sha12>.<n>.<ext>`` is used. Never leaves the file
    in the inbox (every later run would fail on it) and never overwrites an archived copy."""
    source = f"{transfer.inbox.rstrip('/')}/{file_name}"
    if file_name not in folder.list_names(transfer.inbox):
        return None  # archived by an earlier attempt
    target_dir = transfer.archive_dir()
    folder.makedirs(target_dir)
    archived = set(folder.list_names(target_dir))
    if file_name not in archived:
        folder.rename(source, f"{target_dir}/{file_name}")
        return f"{target_dir}/{file_name}"
    stem, dot, ext = file_name.rpartition(".") if "." in file_name else (file_name, "", "")
    hashed = f"{stem}.{sha256[:12]}{dot}{ext}"
    if hashed not in archived:
        folder.rename(source, f"{target_dir}/{hashed}")
        return f"{target_dir}/{hashed}"
    if folder.size(f"{target_dir}/{hashed}") == folder.size(source):  # these bytes are archived already
        folder.delete(source)
        log.info("%s: the archive already has these bytes as %s: inbox copy removed", file_name, hashed)
        return f"{target_dir}/{hashed}"
    n = 2
    while (free := f"{stem}.{sha256[:12]}.{n}{dot}{ext}") in archived:
        n += 1
    folder.rename(source, f"{target_dir}/{free}")
    return f"{target_dir}/{free}"


def write_artifacts(result: MapResult, artifacts_dir: Path) -> Path:
    """summary.json and rejects.csv of one source file, kept with the run."""
    target = artifacts_dir / Path(result.source).stem
    target.mkdir(parents=True, exist_ok=True)
    (target / "summary.json").write_text(json.dumps({**result.summary(), "warnings_kept": result.warnings},
                                                    indent=2), encoding="utf-8")
    (target / "rejects.csv").write_text(rejects_csv(result.rejects), encoding="utf-8", newline="")
    return target


def log_summary(result: MapResult) -> None:
    """The run's summary and rejects in the task log, account numbers masked."""
    s = result.summary()
    log.info("%s: %d bills read, %d accepted, %d rejected, warnings %s", s["source"], s["bills_read"],
             s["accepted"], s["rejected"], s["warnings"] or "none")
    for part in s["bifs"]:
        log.info("  BIF %s: %d invoices, total %s", part["name"], part["invoices"], part["total"])
    for r in result.rejects[:50]:
        log.warning("  rejected bill %s (account %s, lines %s): %s", r.bill, mask_account(r.account),
                    ",".join(map(str, r.lines)), r.reason)
    if len(result.rejects) > 50:
        log.warning("  … and %d more rejected bills (see rejects.csv)", len(result.rejects) - 50)
