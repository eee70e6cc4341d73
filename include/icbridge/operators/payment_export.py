"""Operator of the `<biller>__payment_export` DAG: a thin shell over icbridge.flows.payment_export."""

from __future__ import annotations

import contextlib
import smtplib
import tempfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from icbridge.config.biller import BillerConfig
from icbridge.flows.payment_export import (
    FLOW,
    Destination,
    GapTooLong,
    NotDelivered,
    Outcome,
    RemoteFolderDestination,
    days_to_export,
    deliver,
    export_day,
)
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.smtp import IcbSmtpHook
from icbridge.hooks.state import state_db_url
from icbridge.hooks.transfer import open_remote_folder
from icbridge.layouts.logis import business_day, closure, day_window
from icbridge.masking import mask_email
from icbridge.operators.common import BillerOperator, final_errors, run_artifacts, run_flag, task_execution
from icbridge.state.deliveries import DeliveryLog
from icbridge.state.watermarks import Watermarks


class EmailDestination:
    """Email delivery through an Airflow SMTP connection, the file attached.

    A refusal by the server (an SMTP error reply, or no connection at all) is NotDelivered;
    an error after the message went out (connection lost during DATA) is in doubt: email
    cannot be looked up afterwards, so the flow stops rather than risk a second copy.
    """

    method = "email"

    def __init__(self, conn_id: str, to: list[str], from_email: str | None, subject: str, body: str) -> None:
        self.conn_id, self.to, self.from_email = conn_id, list(to), from_email
        self.subject, self.body = subject, body
        self.description = f"email://{conn_id} to {', '.join(mask_email(a) for a in self.to)}"

    def send(self, name: str, content: bytes, tag: str = "", still_ours: Callable[[], bool] | None = None) -> None:
        if still_ours is not None and not still_ours():
            raise NotDelivered("this run no longer holds the day (another run took it): nothing sent")
        with tempfile.TemporaryDirectory(prefix="icb-export-") as workdir:
            path = Path(workdir) / name
            path.write_bytes(content)
            hook = IcbSmtpHook(smtp_conn_id=self.conn_id)
            try:
                hook.get_conn()
            except Exception as exc:  # nothing was sent: connect, TLS or login failed
                raise NotDelivered(f"SMTP connection {self.conn_id!r} failed: {exc}") from exc
            try:
                hook.send_email_smtp(
                    to=self.to, subject=self.subject, html_content=self.body, from_email=self.from_email,
                    files=[str(path)],
                )
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                raise NotDelivered(f"the SMTP server refused the message: {exc}") from exc
            finally:
                with contextlib.suppress(smtplib.SMTPException, OSError):  # the connection may be gone
                    hook.__exit__(None, None, None)

    def fetch(self, name: str) -> bytes | None:
        raise NotImplementedError("an email cannot be looked up once sent")


def destination_for(biller: BillerConfig, export_name: str, day_text: str, payments: int) -> Destination:
    pe = biller.payment_export_config()
    if pe.delivery == "email":
        subject = f"{biller.name} (BID {biller.bid}): CloudPay payments {day_text} - {export_name}"
        body = (
            f"<p>Attached: <b>{export_name}</b>, the Invoice Cloud CloudPay Payment Export File of "
            f"{day_text} ({payments} payment{'s' if payments != 1 else ''}), for import into Logis.</p>"
        )
        return EmailDestination(pe.conn_id, pe.email_to, pe.email_from, subject, body)
    return RemoteFolderDestination(
        lambda: open_remote_folder(pe.delivery, pe.conn_id), pe.delivery, pe.conn_id, pe.folder
    )


class PaymentExportOperator(BillerOperator):
    """Build the day's Payment Export File from IC ListPayments and deliver it once.

    The day is the last business day closed (23:59 biller time) at or before the run's
    logical date; every business day after the last one exported (the ``payment_export``
    watermark) is exported first, oldest first, up to ``max_catchup_days``. Retries are safe
    (state DB): a failure before the file has its final name is retried; one that may have
    delivered is checked on the server (FTP family) or stops the run for a person (email).
    ``redeliver`` sends the run's own day again on purpose.
    """

    template_fields = ("biller_id", "redeliver")
    ui_color = "#e9f7ef"

    def __init__(self, *, redeliver: bool | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redeliver = redeliver

    @final_errors
    def execute(self, context: Any) -> dict:
        biller = self.biller()
        pe = biller.payment_export
        if pe is None:
            raise AirflowFailException(f"biller {biller.biller_id} has no payment_export section")
        redeliver = run_flag(context, "redeliver", self.redeliver)
        moment: datetime = context.get("logical_date") or context["dag_run"].run_after
        run_day = business_day(moment, biller.tz)
        run_id = context["run_id"]
        marks = Watermarks(state_db_url())
        log = DeliveryLog(engine=marks.engine)
        outcomes: list[Outcome] = []
        try:
            through = marks.covered_through(biller.biller_id, FLOW)
            exported = business_day(through, biller.tz) if through else log.last_delivered_day(biller.biller_id, FLOW)
            try:
                days = days_to_export(run_day, exported, max_days=pe.max_catchup_days, dag_id=self.dag_id)
            except GapTooLong as exc:  # fails the task (final_errors): a person chooses
                marks.record_run(biller.biller_id, FLOW, run_id=run_id, ok=False, message=str(exc))
                raise
            if len(days) > 1:
                self.log.warning("last day exported %s: catching up %d missed business day(s) %s .. %s, oldest first",
                                 exported, len(days) - 1, days[0], days[-2])
            client = InvoiceCloudHook(ic_conn_id=biller.ic_conn_id).get_conn()
            with task_execution(context, marks.engine) as execution:
                for day in days:
                    try:  # the day is this execution's while it builds and sends it: one delivery per day
                        with log.claim_day(biller.biller_id, FLOW, day, execution.token):
                            outcomes.append(self._export_day(biller, client, log, day, run_id, execution.token,
                                                             redeliver=redeliver and day == run_day))
                    except Exception as exc:
                        marks.record_run(biller.biller_id, FLOW, run_id=run_id, ok=False, message=f"{day}: {exc}")
                        raise  # DayTaken is retried (final_errors): a retry finds the day delivered
                    marks.advance(biller.biller_id, FLOW, closure(day, biller.tz), run_id)
            marks.record_run(biller.biller_id, FLOW, run_id=run_id, ok=True, message=None)
        finally:
            marks.dispose()
        result = outcomes[-1].as_dict()
        if len(outcomes) > 1:
            result["earlier_days"] = [o.as_dict() for o in outcomes[:-1]]
        return result

    def _export_day(self, biller: BillerConfig, client: Any, log: DeliveryLog, day: date, run_id: str,
                    token: str, *, redeliver: bool) -> Outcome:
        pe = biller.payment_export_config()
        start, end = day_window(day, biller.tz)
        self.log.info(
            "business day %s: %s < PaymentDate <= %s (%s)",
            day, start.astimezone(biller.tz), end.astimezone(biller.tz), biller.timezone,
        )
        export = export_day(  # UnknownPaymentType fails the task (final_errors)
            client.list_payments, bid=biller.bid, day=day, tz=biller.tz, channel=pe.channel,
            extra_types=pe.payment_types,
        )
        self.log.info(
            "%s: %d payment(s), amount %s, fees %s, %d bytes, sha256 %s",
            export.name, export.payments, export.amount, export.fees, export.size, export.sha256,
        )
        artifacts = run_artifacts(self.dag_id, run_id)
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / export.name).write_bytes(export.content)

        if export.payments == 0 and not pe.empty_day_file:
            self.log.info("no payments on %s and empty_day_file is off: no file", day)
            return Outcome(day, None, 0, None, "no_file", "no payments; empty_day_file is off")

        destination = destination_for(biller, export.name, day.isoformat(), export.payments)
        outcome = deliver(  # InDoubt and ContentChanged fail the task (final_errors): a person settles
            export, destination, log, biller_id=biller.biller_id, run_id=token, redeliver=redeliver
        )
        self.log.info("%s", outcome.message)
        return outcome
