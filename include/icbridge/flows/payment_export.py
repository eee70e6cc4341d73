"""Logis payment export, Airflow-free: fetch a day's CloudPay payments, build the file,
deliver it once.

The operator (icbridge.operators.payment_export) wires in the IC client, the state DB and
a ``Destination`` (FTP family over a ``RemoteFolder``, or email). Idempotency lives here:

* the same payments give the same bytes (icbridge.layouts.logis);
* a day already ``delivered`` with the same sha256 is not sent again unless ``redeliver``;
  a day delivered with *other* bytes fails loudly (payments changed after closure: a
  person decides, and reruns with ``redeliver``);
* an attempt left ``sending`` (crash or lost answer) is resolved before anything is sent:
  a destination that can look (FTP family) confirms or rules out the file under its final
  name; one that cannot (email) stops the run as in doubt.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Protocol

from icbridge.errors import FlowError, TransferError
from icbridge.layouts.logis import ExportFile, PaymentLike, build_export, day_window, in_window
from icbridge.state.db import InDoubt
from icbridge.state.deliveries import DayTaken, DeliveryLog
from icbridge.state.executions import owner, run_of
from icbridge.transfer.remote import RemoteFolder

__all__ = [
    "FLOW",
    "ContentChanged",
    "DayTaken",
    "GapTooLong",
    "Destination",
    "InDoubt",
    "NotDelivered",
    "Outcome",
    "RemoteFolderDestination",
    "days_to_export",
    "deliver",
    "export_day",
]

FLOW = "payment_export"
CLOUDPAY = "CloudPay"
log = logging.getLogger(__name__)

ListPayments = Callable[[datetime, datetime, str | None], list[PaymentLike]]


class GapTooLong(FlowError):  # noqa: N818 - the ops word
    """More business days are missing than ``payment_export.max_catchup_days``: a person backfills."""


def days_to_export(run_day: date, exported_through: date | None, *, max_days: int, dag_id: str) -> list[date]:
    """The business days a run exports, oldest first: every day after the last one exported
    (``exported_through``, the watermark) up to the run's own day; just the run's own day
    when there is no watermark yet or the run is for a day already passed (a backfill or a
    re-run: the delivery log keeps it to one delivery). More than ``max_days`` missing
    raises :class:`GapTooLong` naming the days and the backfill command."""
    if exported_through is None or exported_through >= run_day:
        return [run_day]
    missing = (run_day - exported_through).days
    days = [exported_through + timedelta(days=i) for i in range(1, missing + 1)]
    if missing > max_days:
        first, last = days[0], days[-2] if len(days) > 1 else days[-1]
        raise GapTooLong(
            f"the payment export is {missing} business days behind: the last day exported is "
            f"{exported_through.isoformat()} and this run is for {run_day.isoformat()}, more than max_catchup_days "
            f"({max_days}). Nothing was exported. Export the missing days oldest first with `airflow backfill "
            f"create --dag-id {dag_id} --from-date {first.isoformat()} --to-date {last.isoformat()}` (each run "
            "exports its own day once), then clear this run; or raise payment_export.max_catchup_days "
            "(docs/payment-export.md)"
        )
    return days


class NotDelivered(TransferError):  # noqa: N818 - the ops word
    """The attempt certainly did not reach the biller (nothing under the final name)."""

    retry = True


class ContentChanged(FlowError):  # noqa: N818
    """The day was delivered, and rebuilding it now gives other bytes."""


class Destination(Protocol):
    """Where a biller takes its file. ``send`` raises NotDelivered when it knows the file did
    not arrive; any other error leaves the attempt in doubt."""

    method: str
    description: str  # for the state DB and logs: no secrets, emails masked

    def send(self, name: str, content: bytes, tag: str = "", still_ours: Callable[[], bool] | None = None) -> None:
        """Deliver ``content`` as ``name``; ``tag`` (the attempt's id) keeps this attempt's
        temporary name its own until the rename. ``still_ours`` is asked right before the point
        of no return (the rename, the message): False raises NotDelivered, nothing delivered."""
        ...

    def fetch(self, name: str) -> bytes | None:
        """The file under its final name (None: not there). Raises NotImplementedError when
        the destination cannot look (email)."""
        ...


@dataclass(frozen=True)
class Outcome:
    day: date
    file_name: str | None
    payments: int
    sha256: str | None
    status: str  # delivered | already_delivered | confirmed | no_file
    message: str

    def as_dict(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "file_name": self.file_name,
            "payments": self.payments,
            "sha256": self.sha256,
            "status": self.status,
            "message": self.message,
        }


def export_day(
    list_payments: ListPayments,
    *,
    bid: str,
    day: date,
    tz: tzinfo,
    channel: str = CLOUDPAY,
    extra_types: Mapping[str, str] | None = None,
) -> ExportFile:
    """The file for ``day``: ListPayments over the day's window, exactly (start, end].

    ListPayments is FromDate-inclusive, ToDate-exclusive (our contract, see the WSDL) and
    its resolution is not promised, so we ask for [start, end + 1 s) and keep
    start < PaymentDate <= end ourselves; the channel is checked here too. ValueError when IC
    listed a payment that breaks the answer contract (docs/cis-services.md): no file then.
    """
    start, end = day_window(day, tz)
    listed = list_payments(start, end + timedelta(seconds=1), channel)
    invalid = getattr(listed, "invalid", None)  # a Listing (icbridge.soap.invoice_cloud)
    if invalid:  # a file that silently misses a payment is worse than no file
        raise ValueError(f"{day}: IC listed {len(invalid)} payment(s) that break the answer contract, so no "
                         f"file is built: {'; '.join(invalid[:3])}")
    wanted = channel.lower()
    chosen = [p for p in listed if getattr(p, "channel", channel).lower() == wanted and in_window(p, start, end)]
    return build_export(chosen, bid=bid, day=day, tz=tz, extra_types=extra_types)


def deliver(
    export: ExportFile,
    destination: Destination,
    deliveries: DeliveryLog,
    *,
    biller_id: str,
    run_id: str | None,
    redeliver: bool = False,
) -> Outcome:
    """Send ``export`` unless it is known to be there already; every attempt recorded.

    The caller holds the day (:meth:`DeliveryLog.claim_day` with the same ``run_id``, the
    execution's token), so no other live run is sending it. Attempts left ``sending`` by
    executions that are gone are resolved first (:func:`_resolve_in_doubt`). Then *any*
    ``delivered`` attempt with these bytes means "not sent again", whatever came after it;
    one with other bytes raises :class:`ContentChanged`. ``redeliver`` sends the day again
    on purpose, recorded as a redelivery on the new attempt."""

    def outcome(status: str, message: str) -> Outcome:
        return Outcome(export.day, export.name, export.payments, export.sha256, status, message)

    for attempt in deliveries.attempts(biller_id, FLOW, export.day):
        if attempt.status != "sending" or attempt.run_id == run_id:
            continue
        if not redeliver:
            _resolve_in_doubt(attempt, destination, deliveries)
        elif not owner(deliveries.engine, attempt.run_id).alive:  # a person chose to send the day again
            deliveries.finish(attempt.id, "failed", "superseded by a redelivery (redeliver=true); whether this "
                              "attempt arrived was never known", owner=attempt.run_id)
    delivered = [a for a in deliveries.attempts(biller_id, FLOW, export.day) if a.status == "delivered"]
    note = None
    if delivered and not redeliver:
        same = [a for a in delivered if a.sha256 == export.sha256]
        if same:
            return outcome("already_delivered", f"{export.name} delivered on {same[0].finished_at}; not sent again")
        last = delivered[-1]
        raise ContentChanged(
            f"{export.name} was delivered on {last.finished_at} (sha256 {last.sha256[:12]}…, "
            f"{last.records} payments) but IC's payments now give other bytes (sha256 "
            f"{export.sha256[:12]}…, {export.payments} payments); check with the biller, then "
            "run again with redeliver=true to send the new file"
        )
    if delivered:
        last = delivered[-1]
        note = (f"redelivery (redeliver=true): replaces the copy delivered on {last.finished_at} by run "
                f"{run_of(last.run_id)} (sha256 {last.sha256[:12]}…)")
        log.warning("%s: %s", export.name, note)

    attempt_id = deliveries.begin(
        biller_id=biller_id,
        flow=FLOW,
        day=export.day,
        file_name=export.name,
        sha256=export.sha256,
        size=export.size,
        records=export.payments,
        method=destination.method,
        destination=destination.description,
        run_id=run_id,
        message=note,
    )
    def still_ours() -> bool:
        return run_id is None or deliveries.holds_day(biller_id, FLOW, export.day, run_id)

    try:
        destination.send(export.name, export.content, tag=str(attempt_id), still_ours=still_ours)
    except NotDelivered as exc:
        deliveries.finish(attempt_id, "failed", str(exc) if note is None else f"{note}; {exc}", owner=run_id)
        raise
    # Any other error leaves the attempt `sending`: the next try resolves it first.
    if not deliveries.finish(attempt_id, "delivered", note, owner=run_id):
        log.error("%s: delivered, but attempt %s was settled by someone else meanwhile: their outcome stands",
                  export.name, attempt_id)
    return outcome("delivered", f"{export.name} delivered to {destination.description}")


def _settle_command(last) -> str:
    return (f"python -m icbridge deliveries settle --biller {last.biller_id} --day {last.day} --outcome delivered "
            "--reason '<what the biller said>'")


def _resolve_in_doubt(last, destination: Destination, deliveries: DeliveryLog) -> bool:
    """Settle a ``sending`` attempt of an execution that is gone by looking at the destination;
    True if confirmed there. Raises DayTaken if its execution is in fact alive."""
    running = owner(deliveries.engine, last.run_id)
    if running.alive:
        raise DayTaken(f"{last.file_name} is being sent right now by {running.describe()}: left to that run")
    if last.method != destination.method:
        raise InDoubt(
            f"{last.file_name}: an attempt by {last.method} ({last.destination}) never finished and the "
            f"biller now takes {destination.method}; check, then run with redeliver=true or settle it "
            f"({_settle_command(last)})"
        )
    try:
        found = destination.fetch(last.file_name)
    except NotImplementedError:
        raise InDoubt(
            f"{last.file_name}: the {last.method} attempt of {running.describe()} to {last.destination} may or may "
            "not have arrived (no answer came back). Ask the biller; if it did not arrive run again with "
            "redeliver=true (Logis refuses a Reference it has seen), else settle it as delivered: "
            f"{_settle_command(last)} (docs/payment-export.md)"
        ) from None
    if found is None:
        deliveries.finish(last.id, "failed", "interrupted; not on the server under its final name", owner=last.run_id)
        log.warning("%s: interrupted attempt %s is not on the server: sending again", last.file_name, last.id)
        return False
    if len(found) == last.size and hashlib.sha256(found).hexdigest() == last.sha256:
        deliveries.finish(last.id, "delivered", "interrupted; confirmed on the server (name, size, sha256)",
                          owner=last.run_id)
        log.info("%s: interrupted attempt %s confirmed on the server", last.file_name, last.id)
        return True
    raise InDoubt(
        f"{last.file_name}: an interrupted attempt left a file of {len(found)} bytes under the final name that is "
        "not the one recorded; check it with the biller, then run with redeliver=true"
    )


class RemoteFolderDestination:
    """FTP-family delivery: upload as ``<name>.<attempt>.part`` (a name no other attempt uses),
    check its size, rename, check again.

    The biller's pickup never sees half a file: until the rename, nothing has the final
    name. A failure before the rename raises NotDelivered (the partial upload is removed
    when possible); a failure at or after it leaves the attempt in doubt, which ``fetch``
    settles on the next try.
    """

    def __init__(self, open_folder: Callable[[], RemoteFolder], method: str, conn_id: str, directory: str) -> None:
        self._open = open_folder
        self.method = method
        self.directory = directory.rstrip("/") or "/"
        self.description = f"{method}://{conn_id}{self._path('')}"

    def _path(self, name: str) -> str:
        return f"{self.directory.rstrip('/')}/{name}"

    def send(self, name: str, content: bytes, tag: str = "", still_ours: Callable[[], bool] | None = None) -> None:
        final, partial = self._path(name), self._path(f"{name}.{tag}.part" if tag else f"{name}.part")
        with tempfile.TemporaryDirectory(prefix="icb-export-") as workdir:
            local = Path(workdir) / name
            local.write_bytes(content)
            try:
                folder = self._open()
            except Exception as exc:
                raise NotDelivered(f"could not connect: {exc}") from exc
            with _closing(folder):
                try:
                    folder.makedirs(self.directory)
                    folder.upload(local, partial)
                    size = folder.size(partial)
                    if size != len(content):
                        raise OSError(f"{partial}: the server has {size} bytes, {len(content)} were sent")
                    if still_ours is not None and not still_ours():
                        raise OSError("this run no longer holds the day (its lease lapsed and another run took it): "
                                      "not renamed")
                    if name in folder.list_names(self.directory):
                        folder.delete(final)  # a redelivery replaces the earlier copy
                except Exception as exc:
                    _remove_quietly(folder, partial)
                    raise NotDelivered(f"upload to {partial} failed: {exc}") from exc
                folder.rename(partial, final)
                size = folder.size(final)
                if size != len(content):
                    raise OSError(f"{final}: the server has {size} bytes after the rename, {len(content)} were sent")

    def fetch(self, name: str) -> bytes | None:
        with _closing(self._open()) as folder, tempfile.TemporaryDirectory(prefix="icb-export-") as workdir:
            if name not in folder.list_names(self.directory):
                return None
            local = Path(workdir) / name
            folder.download(self._path(name), local)
            return local.read_bytes()


class _closing:  # noqa: N801 - reads like contextlib.closing
    def __init__(self, folder: RemoteFolder) -> None:
        self.folder = folder

    def __enter__(self) -> RemoteFolder:
        return self.folder

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.folder.close()
        except Exception:  # a dropped connection must not hide the real error
            log.debug("closing the remote folder failed", exc_info=True)


def _remove_quietly(folder: RemoteFolder, path: str) -> None:
    try:
        folder.delete(path)
    except Exception:  # the connection may be gone; the next upload replaces the part file
        log.debug("could not remove %s", path, exc_info=True)
