"""Onboarding preflight: before a new biller is unpaused, prove everything its file names.

``python -m icbridge biller check <biller_id>`` validates the biller file and, for each
connection it names, makes the cheapest call that proves it works: IC credentials answer
(ListOpenInvoices, one row), each CIS endpoint answers (a read for an account that does not
exist: "not found" means connected), the FTPS/SFTP login works and the inbox and archive
folders exist, SMTP accepts the login. It prints a checklist with what to fix; it changes
nothing anywhere (no upload, no payment, no mail, no folder made).

Uses the same hooks as the DAGs (connections from Airflow: the metadata DB, a secrets backend
or ``AIRFLOW_CONN_*``), so it needs the ``AIRFLOW_HOME`` the DAGs use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from icbridge.config.biller import BillerConfig, BillerConfigError, TransferConfig, load_biller

__all__ = ["Check", "check_biller"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


def _run(name: str, probe: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = probe()
    except Exception as exc:  # a checklist reports whatever went wrong, then goes on
        ok, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return Check(name, ok, detail)


def _folders(transfer: TransferConfig, folders: list[str], made_on_use: tuple[str, ...] = ()) -> tuple[bool, str]:
    """The login works and ``folders`` exist; ``made_on_use`` (the archive) may be missing."""
    from icbridge.hooks.transfer import open_remote_folder

    with open_remote_folder(transfer.protocol, transfer.conn_id, connect_attempts=1) as remote:
        missing = [folder for folder in folders if not remote.is_dir(folder)]
        later = [folder for folder in made_on_use if not remote.is_dir(folder)]
    where = f"logged in to {transfer.protocol.upper()} {transfer.conn_id}"
    if missing:
        return False, f"{where}, but these folders are missing: {', '.join(missing)} (create them, or fix the file)"
    note = f" ({', '.join(later)} will be made on first use)" if later else ""
    return True, f"{where}; {', '.join(folders)} exist{note}"


def _checks(biller: BillerConfig) -> Iterator[Check]:
    from icbridge.hooks.invoice_cloud import InvoiceCloudHook

    yield _run(f"Invoice Cloud connection {biller.ic_conn_id}",
               lambda: InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).test_connection())
    if biller.cis_service is not None:
        hook_class = biller.vendor().hook_class()
        yield _run(f"{biller.cis} CIS connections {', '.join(biller.cis_service.conn_ids())}",
                   lambda: hook_class.for_biller(biller).test_connection())
    flows = biller.flows()  # the checks of the flows this biller has (its vendor's, with their sections)
    if "invoices" in flows:
        transfer = biller.invoices_config().transfer
        yield _run(f"invoice inbox {transfer.protocol.upper()} {transfer.conn_id}",
                   lambda: _folders(transfer, [transfer.inbox], (transfer.archive_dir(),)))
    if "payment_export" in flows:
        export = biller.payment_export_config()
        delivery = export.transfer()
        if delivery is not None:
            yield _run(f"payment export {delivery.protocol.upper()} {delivery.conn_id}",
                       lambda: _folders(delivery, [delivery.inbox]))
        else:
            yield _run(f"payment export SMTP {export.conn_id}", lambda: _smtp(export.conn_id))
    from icbridge.dagbuild.pools import enabled, pools_used

    if enabled():  # a task whose pool does not exist is never scheduled: say so before unpausing
        for name, uses in sorted(pools_used([biller]).items()):
            need = max(u.slots for u in uses)
            yield _run(f"Airflow pool {name}", functools.partial(_pool, name, need))


def _pool(name: str, need: int) -> tuple[bool, str]:
    """The endpoint pool exists with at least ``need`` slots (Airflow's metadata DB)."""
    from airflow.models.pool import Pool

    pool = Pool.get_pool(name)
    if pool is None:
        return False, (f"missing: its tasks would never be scheduled; `python -m icbridge pools --create-missing` "
                       f"(or `airflow pools set {name} <size> ...`)")
    if pool.slots < need:
        return False, f"{pool.slots} slots, but a task of this biller takes {need}: raise it (airflow pools set)"
    return True, f"{pool.slots} slots (this biller's tasks take up to {need})"


def _smtp(conn_id: str) -> tuple[bool, str]:
    from icbridge.hooks.smtp import IcbSmtpHook

    with IcbSmtpHook(smtp_conn_id=conn_id):  # logs in; leaving the block says QUIT
        return True, f"SMTP {conn_id} accepted the login (nothing sent)"


def check_biller(path: Path) -> list[Check]:
    """Every check for the biller file at ``path``, in order (the file first)."""
    try:
        biller = load_biller(path)
    except BillerConfigError as exc:
        return [Check(f"biller file {path}", False, str(exc))]
    except FileNotFoundError:
        return [Check(f"biller file {path}", False, "no such file")]
    return [Check(f"biller file {path.name}", True, f"valid ({biller.cis}, BID {biller.bid})"), *_checks(biller)]
