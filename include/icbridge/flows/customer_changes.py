"""`<biller>__customer_changes` without Airflow: IC's change log of the interval -> the CIS.

inHance: Paperless -> ``SetPaperless``, AutoPay -> ``SetAutopay``, Email -> ``SetEmail``;
Phone is ignored (no inHance method). AUS: Paperless ->
``UpdateCisLinkTableEBillAndLinkRegistration`` (email left unchanged), AutoPay ->
``UpdatePaymentPlan``; AUS has no email or phone change log (seed 004): those entries are
skipped and counted. Rule 4 (conveyance suffix dropped) applies to every account sent.

Several changes of one kind for one account in the interval: only the last (by ChangedAt)
is sent - sending them all concurrently could apply them out of order.

The setters are idempotent, so transport faults are retried (``sync.attempts``), and a
change that still failed makes the run fail *after* all others were sent: the Airflow retry
sends the whole interval again, which is safe. A business refusal (account not found,
refused value) is recorded and does not fail the run: retrying would not help.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from icbridge.calls import CallPolicy, call_all
from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, describe_error, read_retryable
from icbridge.flows.windows import WindowedListing, read_windows
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.masking import mask_email
from icbridge.soap.cis import CisResult
from icbridge.soap.invoice_cloud import ChangeLogEntry, InvoiceCloudClient
from icbridge.state.watermarks import DoneItem, SyncItems, item_key
from icbridge.vendors import ChangeKind, CisService

log = logging.getLogger(__name__)

__all__ = ["FLOW", "change_key", "list_change_log", "parse_flag", "run_customer_changes"]

FLOW = "customer_changes"

_TRUE = {"true", "on", "yes", "y", "1"}
_FALSE = {"false", "off", "no", "n", "0"}


def parse_flag(text: str) -> bool:
    """IC's NewValue of a Paperless/AutoPay change as a bool; ValueError when it is neither."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"NewValue {text!r} is not a yes/no value")


@dataclass(frozen=True)
class _Change:
    entry: ChangeLogEntry
    kind: ChangeKind
    cis_account: str
    value: bool | str


def _done(entry: ChangeLogEntry, kind: str, outcome: str) -> DoneItem:
    return DoneItem(change_key(entry), entry.account_number, kind[:32], _utc(entry.changed_at), outcome)


def _drop_superseded(biller: BillerConfig, items: SyncItems, plan: list[_Change], report: SyncReport
                     ) -> list[_Change]:
    """Drop planned changes older than one of the same kind already applied to the account
    (a late ChangeLog entry read in the lookback must not undo a newer change)."""
    keep = []
    latest: dict[str, dict[str, datetime]] = {}
    for kind in {c.kind for c in plan}:
        accounts = [c.entry.account_number for c in plan if c.kind == kind]
        latest[kind] = items.latest(biller.biller_id, FLOW, accounts, kind, outcomes=("applied",))
    for change in plan:
        newer = latest[change.kind].get(change.entry.account_number)
        when = _utc(change.entry.changed_at)
        if newer is not None and when is not None and when < newer:
            report.add("superseded_earlier", change.entry.account_number,
                       f"{change.kind} of {when.isoformat()} is older than the one applied ({newer.isoformat()})",
                       note=True)
        else:
            keep.append(change)
    return keep


def _plan(biller: BillerConfig, entries: list[ChangeLogEntry], report: SyncReport) -> list[_Change]:
    kinds: dict[str, ChangeKind] = {"paperless": "paperless", "autopay": "autopay", "email": "email"}
    supported = biller.vendor().change_kinds
    latest: dict[tuple[str, ChangeKind], ChangeLogEntry] = {}
    for entry in entries:
        change_type = entry.change_type.strip().lower()
        if change_type == "phone":
            report.add("ignored_phone", entry.account_number)
            continue
        if change_type not in kinds:
            report.add("ignored_unknown_type", entry.account_number, f"ChangeType {entry.change_type!r}", note=True)
            continue
        if kinds[change_type] not in supported:  # AUS: no email change (seed 004)
            report.add(f"skipped_unsupported_{biller.cis}_{change_type}", entry.account_number)
            continue
        key = (entry.account_number, kinds[change_type])
        earlier = latest.get(key)
        if earlier is not None:
            report.add("superseded", entry.account_number)
            if earlier.changed_at and entry.changed_at and entry.changed_at < earlier.changed_at:
                continue
        latest[key] = entry
    plan = []
    for (account, kind), entry in latest.items():
        try:
            cis_account = drop_conveyance_suffix(account)
            value: bool | str = entry.new_value.strip() if kind == "email" else parse_flag(entry.new_value)
            if kind == "email" and "@" not in str(value):
                raise ValueError(f"NewValue {mask_email(entry.new_value)!r} is not an email address")
        except ValueError as exc:
            report.add("invalid", account, f"{entry.change_type}: {exc}", note=True)
            continue
        plan.append(_Change(entry, kind, cis_account, value))
    return plan


def change_key(entry: ChangeLogEntry) -> str:
    """A change's identity (account, type, value, ChangedAt) as stored in ``icb_sync_items``."""
    return item_key(entry.account_number, entry.change_type.strip().lower(), entry.new_value, entry.changed_at)


def list_change_log(ic: InvoiceCloudClient, windows: Sequence[Interval]) -> WindowedListing:
    """IC ``ListChangeLog`` window by window (oldest first), each change identity once."""
    return read_windows(ic.list_change_log, windows, change_key)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def run_customer_changes(
    *,
    biller: BillerConfig,
    ic: InvoiceCloudClient,
    cis: CisService,
    interval: Interval,
    policy: CallPolicy,
    windows: Sequence[Interval] | None = None,
    items: SyncItems | None = None,
    run_id: str | None = None,
) -> SyncReport:
    """Send the interval's changes; the report, or :class:`SyncFailed` (retry=True) when some
    change still failed on transport after the retries (after all others were sent).

    With ``items`` (watermarked runs, flows/windows.py) every change is handled once by its
    identity: one already handled (applied, refused, superseded, skipped) is not sent again,
    and one older than a change of the same kind already applied to the account is
    superseded (a late entry never undoes a newer one). ``report.done_through``: the
    ChangedAt of the first change that failed on transport, or the start of the first window
    where IC listed an entry breaking the answer contract (None: all were handled)."""
    report = SyncReport("customer_changes", biller.biller_id, interval)
    listing = list_change_log(ic, windows or (interval,))
    for problem in listing.invalid:  # left out by the answer contract: nothing invented from them
        report.add("error", "", f"IC change log entry breaks the answer contract: {problem}", note=True)
    held_from = listing.held_from
    read = len(listing)
    done: set[str] = set()
    if items is not None:
        done = items.done(biller.biller_id, FLOW, [change_key(e) for e in listing])
        for entry in listing:
            if change_key(entry) in done:
                report.add("already_handled", entry.account_number)
    entries = [e for e in listing if change_key(e) not in done]
    plan = _plan(biller, entries, report)
    if items is not None:
        plan = _drop_superseded(biller, items, plan, report)
    log.info("%s: %d change(s) in %s, %d already handled, %d to send", biller.biller_id, read, interval,
             len(done), len(plan))

    def apply(change: _Change) -> CisResult:
        return cis.apply_change(change.kind, change.cis_account, change.value)

    handled: list[DoneItem] = []
    failed: list[datetime | None] = []
    for outcome in call_all(plan, apply, policy, retryable=read_retryable):
        change = outcome.item
        label = f"{change.kind}={mask_email(str(change.value)) if change.kind == 'email' else change.value}"
        if not outcome.ok:
            report.add("error", change.entry.account_number,
                       f"{label}: after {outcome.attempts} tries: {describe_error(outcome.failure)}", note=True)
            failed.append(_utc(change.entry.changed_at))
            continue
        result = outcome.value
        if result.ok:
            report.add(f"applied_{change.kind}", change.entry.account_number)
            handled.append(_done(change.entry, change.kind, "applied"))
        else:
            report.add("cis_not_found" if result.not_found else "cis_refused",
                       change.entry.account_number, f"{label}: {result.message}", note=True)
            handled.append(_done(change.entry, change.kind, "refused"))
    if items is not None:
        planned = {change_key(c.entry) for c in plan}
        handled += [_done(e, e.change_type.strip().lower(), "not_sent") for e in entries
                    if change_key(e) not in planned]  # superseded, ignored, unsupported, invalid: final
        items.mark_done(biller.biller_id, FLOW, handled, run_id)
    if failed or held_from is not None:
        known = [t for t in failed if t is not None]
        if len(known) < len(failed):
            known.append(interval.start)
        report.done_through = min([*known, *([held_from] if held_from is not None else [])])
    errors = report.counts.get("error", 0)
    if errors:
        raise SyncFailed(report, f"{errors} change(s) could not be read from IC or did not reach the CIS after "
                                 "retries; the others were sent. "
                                 "A retry of the run sends the interval again (the setters are idempotent)",
                         retry=True)
    return report
