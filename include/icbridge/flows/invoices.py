"""The AUS invoice flow, without Airflow: find files, download, map, check, upload, archive.

The Airflow operators call these with real hooks (icbridge.operators.invoices); tests and
the CLI can call them with any RemoteFolder and uploader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from icbridge.config.biller import BillerConfig
from icbridge.exports import rejects_csv
from icbridge.layouts.aus import FileRejected, IncompleteFile, parse_file_name
from icbridge.mapping.aus_to_bif import BifPart, MapResult, map_aus
from icbridge.masking import mask_account
from icbridge.soap.errors import NotSent
from icbridge.state.db import InDoubt, Ledger, SourceFile
from icbridge.transfer.remote import RemoteFolder

log = logging.getLogger(__name__)


class UploadRefused(Exception):  # noqa: N818
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
    inv = biller.invoices
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
    transfer = biller.invoices.transfer
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
                     in_flight=biller.invoices.upload_in_flight, biller_id=biller.biller_id)

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
    ``force``. Each part is marked ``sending`` before its call, and its own answer is recorded
    when it comes (``uploaded`` / ``refused`` / ``not_sent``; no answer that can be judged
    leaves it ``sending``). After the first failure no new part starts, the parts in flight
    are awaited and recorded, and the first failure in part order is raised: UploadRefused,
    NotSent, or the uploader's own error (NoAnswer, AnswerError: in doubt). The ledger is
    written from the calling thread only; the uploader runs in up to ``in_flight`` threads.
    """
    todo: list[tuple[int, BifPart]] = []
    in_doubt: list[str] = []
    for index, part in enumerate(parts, start=1):
        status = ledger.part_status(record, index)
        if status == "uploaded":
            log.info("part %s already uploaded: skipped", part.name)
            outcome.skipped_parts.append(part.name)
        elif status == "sending" and not force:
            in_doubt.append(part.name)
        else:
            todo.append((index, part))
    if in_doubt:
        raise InDoubt(
            f"{record.file_name}: {len(in_doubt)} part(s) sent in an earlier attempt got no answer and may be in "
            f"IC: {', '.join(in_doubt)}. Check IC, then settle each: `python -m icbridge ledger settle --biller "
            f"{biller_id} --file {record.file_name} --part <part> --as uploaded|resend`, or re-run with force=true"
        )
    failures: list[BaseException] = []
    flying: deque[tuple[int, BifPart, Future[UploadAnswer]]] = deque()
    waiting = iter(todo)
    with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="icb-upload") as pool:
        while True:
            while not failures and len(flying) < max(1, in_flight):
                nxt = next(waiting, None)
                if nxt is None:
                    break
                index, part = nxt
                ledger.mark_sending(record, index, part.name, part.sha256, part.invoices, f"{part.total:.2f}", run_id)
                flying.append((index, part, pool.submit(_send, uploader, part)))
            if not flying:
                break
            index, part, future = flying.popleft()  # answers are recorded in part order
            try:
                answer = future.result()
            except NotSent as exc:
                ledger.mark_part(record, index, "not_sent", message=str(exc))
                log.warning("part %s not sent: %s", part.name, exc)
                failures.append(exc)
                continue
            except Exception as exc:  # no answer, or one that cannot be judged: stays `sending`
                log.error("part %s: IC's answer cannot be judged, in doubt: %s", part.name, exc)
                failures.append(exc)
                continue
            if not answer.success:
                ledger.mark_part(record, index, "refused", message=answer.message)
                log.error("IC refused %s: %s", part.name, answer.message)
                failures.append(UploadRefused(f"{record.file_name}: IC refused {part.name}: {answer.message}"))
                continue
            ledger.mark_part(record, index, "uploaded", ic_file_id=answer.file_id, message=answer.message or None)
            log.info("uploaded %s: %d invoices, total %.2f, IC FileID %s", part.name, part.invoices, part.total,
                     answer.file_id)
            outcome.uploaded_parts.append(part.name)
    if failures:
        raise failures[0]


def _send(uploader: Uploader, part: BifPart) -> UploadAnswer:
    return uploader(part.name, part.path.read_bytes())


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
    """Move the processed file to the archive folder (a second copy of a name gets its hash)."""
    source = f"{transfer.inbox.rstrip('/')}/{file_name}"
    if file_name not in folder.list_names(transfer.inbox):
        return None  # archived by an earlier attempt
    target_dir = transfer.archive_dir()
    folder.makedirs(target_dir)
    target = f"{target_dir}/{file_name}"
    if file_name in folder.list_names(target_dir):
        stem, dot, ext = file_name.rpartition(".")
        target = f"{target_dir}/{stem}.{sha256[:12]}{dot}{ext}"
    folder.rename(source, target)
    return target


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
