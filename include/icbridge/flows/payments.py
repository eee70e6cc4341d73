"""`<biller>__payments` without Airflow: IC payments of the interval -> the CIS data pump.

inHance ``MakePaymentExtended`` / AUS ``AddPendingPayment``, each payment at most once per
PaymentGUID (icbridge.state.payments). Rules (shared/specs/web-services.md):

* rule 4: a conveyed IC account ``...CV-<12-14 digits>`` is sent without the suffix;
* rule 5 (inHance): PayPal is sent as ``cis_service.paypal_payment_type`` ("Credit Card").
* Channels in ``sync.payments_skip_channels`` (default CloudPay: in-office payments the
  inHance/AUS pump does not carry; Logis gets them from the payment export) are skipped.

Retries: a payment is re-tried inside the run only when the request provably never left
(:func:`~icbridge.flows.sync_common.is_not_sent`); anything else after sending is *in doubt*.
The run finishes every other payment, then fails naming what needs a person.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from icbridge.calls import CallPolicy, call_all
from icbridge.config.biller import BillerConfig
from icbridge.flows.sync_common import Interval, SyncFailed, SyncReport, describe_error, is_not_sent
from icbridge.flows.windows import WindowedListing, read_windows
from icbridge.mapping.accounts import drop_conveyance_suffix
from icbridge.soap.cis import CisFault
from icbridge.soap.errors import CredentialsRefused, NotSent
from icbridge.soap.invoice_cloud import InvoiceCloudClient, Payment
from icbridge.state.db import StateDbFailed
from icbridge.state.payments import PaymentLedger
from icbridge.vendors import CisService, PaymentAnswer, PaymentPost

log = logging.getLogger(__name__)

__all__ = ["cis_payment_type", "list_payments", "run_payments"]

RESEND_WINDOW = timedelta(days=1)  # around a stored PaymentDate, whose UTC offset SQLite does not keep


def cis_payment_type(biller: BillerConfig, ic_payment_type: str) -> str:
    """IC's payment type as the biller's CIS is sent it (rule 5: the vendor decides; inHance
    sends PayPal as setting 116, default "Credit Card")."""
    settings = biller.cis_service
    return biller.vendor().payment_type(settings, ic_payment_type) if settings is not None else ic_payment_type


class _ClaimFailed(NotSent):
    """The state DB failed while claiming a payment: the CIS was never called (retried like any not-sent)."""


@dataclass(frozen=True)
class _Post:
    payment: Payment
    cis_account: str
    payment_type: str


def run_payments(
    *,
    biller: BillerConfig,
    ic: InvoiceCloudClient,
    cis: CisService,
    ledger: PaymentLedger,
    interval: Interval,
    run_id: str,
    policy: CallPolicy,
    windows: Sequence[Interval] | None = None,
    reported_before: datetime | None = None,
) -> SyncReport:
    """Send the interval's payments once each; return the report, or raise :class:`SyncFailed`
    (after finishing every other payment) when a payment is in doubt or refused (retry=False)
    or could not reach the CIS (retry=True). ``run_id`` must differ per attempt (task try):
    a row left ``sending`` by another attempt is in doubt.

    Watermarked runs (flows/windows.py) read in ``windows`` and re-read a lookback overlap:
    the ledger keeps every payment to one send. A payment still needing a person whose
    PaymentDate is before ``reported_before`` (the overlap: an earlier run read it and failed
    for it) is listed as ``*_reported`` and does not fail this run again."""
    report = SyncReport("payments", biller.biller_id, interval)
    skip_channels = {c.strip().lower() for c in biller.sync_settings().payments_skip_channels}
    payments = list_payments(ic, windows or (interval,))
    log.info("%s: %d IC payment(s) in %s", biller.biller_id, len(payments), interval)
    for problem in payments.invalid:  # left out by the answer contract: never posted with a 0
        report.add("invalid_in_ic_answer", "", problem, note=True, payment_guid="?")
    report.done_through = payments.held_from  # a watermark must not pass a payment IC listed broken
    listed = list(payments)
    listed += _earlier_resends(biller, ic, ledger, {p.payment_guid for p in listed})

    wanted = [p for p in listed if p.channel.strip().lower() not in skip_channels]
    for p in listed:
        if p.channel.strip().lower() in skip_channels:
            report.add("skipped_channel", p.account_number)
    guids = [p.payment_guid for p in wanted]
    stale, live = ledger.mark_stale_sending(biller.biller_id, guids, run_id)
    for guid in stale:
        log.error("payment %s was left 'sending' by an earlier execution: now in doubt", guid)
    known = ledger.statuses(biller.biller_id, guids)

    to_send: list[_Post] = []  # each with its PaymentDate
    for p in wanted:
        status = known.get(p.payment_guid)
        if status in ("posted", "ignored"):
            report.add(f"already_{status}", p.account_number)
            continue
        if status == "sending":  # not stale (those are in doubt now): another execution is sending it right now
            holder = live.get(p.payment_guid, "another run (it claimed the payment a moment ago)")
            report.add("being_sent_by_another_run", p.account_number, f"not sent by this run: {holder}"
                       " is sending it and records the answer", note=True, payment_guid=p.payment_guid)
            continue
        if status in ("in_doubt", "refused", "sending"):
            seen = reported_before is not None and p.payment_date is not None and _utc(p.payment_date) < reported_before
            report.add(f"{'in_doubt' if status == 'sending' else status}_{'reported' if seen else 'earlier'}",
                       p.account_number,
                       "not sent again: settle it (docs/operations.md)", note=True, payment_guid=p.payment_guid)
            continue
        try:
            cis_account = drop_conveyance_suffix(p.account_number)
            if p.payment_date is None:  # never sent with a date of our own
                raise ValueError("IC listed it without a PaymentDate")
        except ValueError as exc:
            ledger.refuse_unsent(
                biller.biller_id, p.payment_guid, account_number=p.account_number, amount=p.payment_amount,
                convenience_fee=p.convenience_fee, payment_type=p.payment_type, cis=biller.cis, run_id=run_id,
                message=f"not sent: {exc}",
            )
            report.add("refused", p.account_number, f"not sent: {exc}", note=True, payment_guid=p.payment_guid)
            continue
        to_send.append(_Post(p, cis_account, cis_payment_type(biller, p.payment_type)))

    def send(item: _Post) -> PaymentAnswer:
        p = item.payment
        assert p.payment_date is not None  # checked before it joined to_send
        return cis.post_payment(PaymentPost(
            item.cis_account, p.payment_date, p.payment_guid, p.invoice_number, item.payment_type,
            p.payment_amount, p.convenience_fee,
        ))

    def post(item: _Post) -> PaymentAnswer | None:
        p = item.payment
        try:
            claimed = ledger.claim(
                biller.biller_id, p.payment_guid, account_number=p.account_number, cis_account=item.cis_account,
                invoice_number=p.invoice_number, amount=p.payment_amount, convenience_fee=p.convenience_fee,
                payment_type=item.payment_type, payment_date=p.payment_date, cis=biller.cis, run_id=run_id,
            )
        except SQLAlchemyError as exc:  # before the call: nothing went to the CIS
            raise _ClaimFailed(f"the state DB failed while claiming the payment, so it was not sent: {exc}") from exc
        if not claimed:
            return None  # another run took it between our read and now
        try:
            answer = send(item)
        except Exception as exc:
            log.info("payment %s: no usable answer from the CIS: %s", p.payment_guid, describe_error(exc))
            raise
        # logged where it arrives: if the run is stopped before the answer is recorded, this line has it
        log.info("payment %s: the CIS answered ok=%s reference=%s message=%r", p.payment_guid, answer.ok,
                 answer.reference, answer.message)
        return answer

    unrecorded: list[str] = []

    def record(guid: str, status: str, *, message: str | None = None, cis_reference: str | None = None) -> None:
        """The CIS's answer into the ledger; logged in full first, so a state DB that fails now
        loses nothing: the row stays ``sending`` (in doubt for the next run) and this log has it."""
        log.info("payment %s: %s%s%s", guid, status, f" ({message})" if message else "",
                 f", CIS reference {cis_reference}" if cis_reference else "")
        try:
            if not ledger.finish(biller.biller_id, guid, status, message=message, cis_reference=cis_reference,
                                 run_id=run_id):
                log.error("payment %s: answer %s not recorded: another run changed its ledger row meanwhile",
                          guid, status)
        except SQLAlchemyError as exc:
            unrecorded.append(guid)
            log.error("payment %s: the state DB failed recording %r (kept in this log; the row stays 'sending', "
                      "in doubt for the next run): %s", guid, status, exc)

    for outcome in call_all(to_send, post, policy, retryable=is_not_sent):
        p = outcome.item.payment
        answer = outcome.result
        if outcome.ok and answer is None:
            report.add("taken_by_another_run", p.account_number, note=True, payment_guid=p.payment_guid)
        elif answer is not None:
            if answer.ok:
                record(p.payment_guid, "posted", message=answer.message or None,
                              cis_reference=answer.reference)
                report.add("posted", p.account_number)
            elif answer.credentials_refused:  # not applied: it goes again once the key is fixed
                message = f"not applied: the CIS refused the web-service key ({answer.message})"
                record(p.payment_guid, "resend", message=message)
                report.add("credentials_refused", p.account_number, message, note=True, payment_guid=p.payment_guid)
            else:
                record(p.payment_guid, "refused", message=answer.message)
                report.add("refused", p.account_number, answer.message, note=True, payment_guid=p.payment_guid)
        elif isinstance(outcome.error, CredentialsRefused):  # not applied: it goes again once the key is fixed
            message = f"not applied: {outcome.error.message}"
            record(p.payment_guid, "resend", message=message)
            report.add("credentials_refused", p.account_number, message, note=True, payment_guid=p.payment_guid)
        elif isinstance(outcome.error, CisFault):  # the CIS answered with a fault: it refused
            message = f"refused (SOAP fault): {outcome.error.message}"
            record(p.payment_guid, "refused", message=message)
            report.add("refused", p.account_number, message, note=True, payment_guid=p.payment_guid)
        elif isinstance(outcome.error, _ClaimFailed):  # the state DB, not the CIS: nothing was sent
            report.add("not_sent_state_db", p.account_number, str(outcome.error), note=True,
                       payment_guid=p.payment_guid)
            try:  # a claim that committed although its answer was lost: it goes with the next run, not in doubt
                ledger.finish(biller.biller_id, p.payment_guid, "resend", message=str(outcome.error), run_id=run_id)
            except SQLAlchemyError:
                log.warning("payment %s: could not mark it resend (the state DB is still failing)", p.payment_guid)
        elif is_not_sent(outcome.failure):
            message = f"not sent (CIS not reached after {outcome.attempts} tries): {describe_error(outcome.failure)}"
            record(p.payment_guid, "resend", message=message)
            report.add("not_sent", p.account_number, message, note=True, payment_guid=p.payment_guid)
        else:
            message = f"outcome unknown: {describe_error(outcome.failure)}"
            record(p.payment_guid, "in_doubt", message=message)
            report.add("in_doubt", p.account_number, message, note=True, payment_guid=p.payment_guid)

    if unrecorded:
        raise StateDbFailed(
            f"the state DB failed while recording the CIS's answers to {len(unrecorded)} payment(s) "
            f"({', '.join(unrecorded[:20])}): the answers are in this task log; those payments stay 'sending' and "
            "the next run marks them in doubt for a person (docs/operations.md)")
    _judge(report)
    return report


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def list_payments(ic: InvoiceCloudClient, windows: Sequence[Interval]) -> WindowedListing:
    """IC ``ListPayments`` window by window (oldest first), each PaymentGUID once."""
    return read_windows(ic.list_payments, windows, lambda p: p.payment_guid)


def _earlier_resends(
    biller: BillerConfig, ic: InvoiceCloudClient, ledger: PaymentLedger, listed: set[str]
) -> list[Payment]:
    """Payments of other intervals marked ``resend`` (settled so by ops, or left so when the
    CIS could not be reached and the retries ran out): this run sends them, so nobody has to
    find and clear the run of their own interval. Each is read again from IC (around its
    PaymentDate) so it goes through the same rules as any payment; the ledger's
    compare-and-set claim keeps it to one send even if its own run is cleared too."""
    resends = [r for r in ledger.rows(biller.biller_id, status="resend") if r.payment_guid not in listed]
    found: list[Payment] = []
    for row in resends:
        match = None
        if row.payment_date is not None:
            when = row.payment_date if row.payment_date.tzinfo else row.payment_date.replace(tzinfo=UTC)
            window = ic.list_payments(when - RESEND_WINDOW, when + RESEND_WINDOW)
            match = next((p for p in window if p.payment_guid == row.payment_guid), None)
        if match is None:
            log.warning("payment %s is marked resend but IC does not list it around its date: left as it is "
                        "(see `python -m icbridge payments show --status resend`)", row.payment_guid)
        else:
            found.append(match)
    if found:
        log.info("%s: %d payment(s) of earlier intervals marked resend", biller.biller_id, len(found))
    return found


def _judge(report: SyncReport) -> None:
    """Fail the run (after all payments were handled) when any needs a person or a retry."""
    refused_key = [i for i in report.items if i["outcome"] == "credentials_refused"]
    if refused_key:
        raise SyncFailed(
            report,
            f"the CIS refused the web-service key for {len(refused_key)} payment(s): fix the password of the "
            f"biller's payments connection (docs/cis-services.md); nothing was applied, the payments are marked "
            "resend and go with the next run",
            retry=False,
        )
    attention = [i for i in report.items if i["outcome"] in ("in_doubt", "refused", "in_doubt_earlier",
                                                             "refused_earlier")]
    invalid = [i["detail"] for i in report.items if i["outcome"] == "invalid_in_ic_answer"]
    if invalid:
        attention.append({"payment_guid": "(unnamed)", "account": "", "outcome": "invalid_in_ic_answer"})
    if attention:
        named = "; ".join(f"{i['payment_guid']} (account {i['account']}, {i['outcome']})" for i in attention[:20])
        more = f" and {len(attention) - 20} more" if len(attention) > 20 else ""
        raise SyncFailed(
            report,
            (f"IC listed {len(invalid)} payment(s) that break the answer contract (not posted): "
             + "; ".join(invalid[:5]) + ". " if invalid else "")
            + f"{len(attention)} payment(s) need a person before they can be settled: {named}{more}. Nothing was "
            "sent twice. Check the CIS, then `python -m icbridge payments settle --biller "
            f"{report.biller_id} --payment-guid GUID --outcome posted|resend|ignore --reason '<what the CIS shows>'` "
            "(docs/operations.md)",
            retry=False,
        )
    retried = (  # nothing needs a person: a retry sends these (first match decides the message)
        ("being_sent_by_another_run", lambda found: (
            f"{len(found)} payment(s) are being sent by another run right now and were not sent by this one: "
            + "; ".join(f"{i['payment_guid']} ({i['detail']})" for i in found[:5])
            + ". A retry checks again: by then that run has recorded the answer, or it is gone and the payment is "
            "in doubt for a person")),
        ("not_sent_state_db", lambda found: (
            f"the state DB failed while claiming {len(found)} payment(s), so they were not sent (nothing is in "
            f"doubt); a retry sends them: {found[0]['detail']}")),
        ("not_sent", lambda found: (
            f"{len(found)} payment(s) could not reach the CIS (nothing sent); a retry sends them: "
            + "; ".join(i["payment_guid"] for i in found[:20]))),
    )
    for outcome, describe in retried:
        found = [i for i in report.items if i["outcome"] == outcome]
        if found:
            raise SyncFailed(report, describe(found), retry=True)
