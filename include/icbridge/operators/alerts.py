"""The alerts task (`icbridge__alerts`, every 15 minutes): what did not happen, or went wrong,
reaches a person through Airflow's notifiers, once per incident and once when it recovers.

Each run reads the Integration health rows (icbridge.state.health: late, behind, failed, in
doubt, rejected), opens and closes incidents (icbridge.state.alerts) and sends the notices not
sent yet through each biller's alert routes (``alerts`` in the biller file, default email to
``alert_emails`` with the smtp provider's SmtpNotifier). A retry of a flow adds no message:
incidents are opened by the condition, not by task attempts. docs/operations.md.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from icbridge.config.biller import AlertRoute, BillerConfig, default_billers_dir, load_billers
from icbridge.hooks.state import state_db_url
from icbridge.masking import mask_email
from icbridge.state.alerts import Notice, open_and_close, pending, sent
from icbridge.state.db import make_engine
from icbridge.state.health import health_rows

__all__ = ["Alert", "HealthAlertsOperator", "STEPS"]

STEPS = {
    "late": "Ask the biller whether AUS wrote the IC Daily Export (its job, its folder); when the file is in the "
            "inbox the next invoices run uploads it.",
    "behind": "Look at the flow's last runs in Airflow; the next run catches up from its watermark once the cause "
              "is fixed.",
    "failed": "Open the failed run's log; fix the cause, then clear the task (the flows never duplicate).",
    "in_doubt": "Check the items on the health page's in-doubt list against the peer, then settle each "
                "(python -m icbridge ... settle --reason).",
    "rejected": "Open the rejected file's summary (rejects.csv, the reason); ask the biller for a corrected file.",
}


@dataclass(frozen=True)
class Alert:
    """One alert as the notifiers' templates see it (``alert`` in their Jinja context)."""

    kind: str  # the incident's kind, or "recovered"
    biller_id: str
    flow: str
    subject: str
    text: str
    html: str
    link: str


def _alert(notice: Notice, biller: BillerConfig | None, base_url: str) -> Alert:
    name = biller.name if biller is not None else notice.biller_id
    kind = "recovered" if notice.recovered else notice.kind
    detail = mask_email(notice.detail)  # account numbers never reach a detail; an email might
    link = f"{base_url}/dags/{notice.biller_id}__{notice.flow}"
    if notice.recovered:
        subject = f"[icbridge] RECOVERED {notice.biller_id} {notice.flow}: {notice.kind} cleared"
        text = f"{name} ({notice.biller_id}), {notice.flow}: the {notice.kind} incident cleared ({detail})."
    else:
        subject = f"[icbridge] {notice.kind.upper()} {notice.biller_id} {notice.flow}: {detail[:120]}"
        text = (f"{name} ({notice.biller_id}), {notice.flow}: {detail}.\nWhat to do: {STEPS.get(notice.kind, '')}\n"
                f"Health: {base_url}/icbridge/health/")
    body = (f"<p>{html.escape(text).replace(chr(10), '<br>')}</p>"
            f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>')
    return Alert(kind, notice.biller_id, notice.flow, subject, text + f"\nRun: {link}", body, link)


def send(route: AlertRoute, alert: Alert, context: Any) -> None:
    """Build the route's notifier and send ``alert`` through it (its templates see ``alert``)."""
    from airflow.sdk.module_loading import import_string

    notifier = import_string(route.notifier)(**route.params)
    notifier({**context, "alert": alert})


class HealthAlertsOperator(BaseOperator):
    """Evaluate every biller's health, open and close incidents, send the pending alerts.

    ``billers_dir``: the biller files (default ICBRIDGE_BILLERS_DIR / include/billers);
    ``base_url``: the Airflow UI's address in the links (default ``[api] base_url``). Fails
    (retried) when a notice could not be sent; the others went out and the next run sends it."""

    template_fields = ("billers_dir",)
    ui_color = "#fdecea"

    def __init__(self, *, billers_dir: str | None = None, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.billers_dir = billers_dir
        self.base_url = base_url

    def execute(self, context: Any) -> dict[str, Any]:
        from pathlib import Path

        from airflow.sdk import conf

        base_url = (self.base_url or conf.get("api", "base_url", fallback="http://localhost:8080")).rstrip("/")
        billers = load_billers(Path(self.billers_dir) if self.billers_dir else default_billers_dir()).billers
        by_id = {b.biller_id: b for b in billers}
        engine = make_engine(state_db_url())
        failed: list[str] = []
        delivered = 0
        try:
            rows = health_rows(engine, billers, datetime.now(UTC))
            open_and_close(engine, rows)
            for notice in pending(engine):
                biller = by_id.get(notice.biller_id)
                alert = _alert(notice, biller, base_url)
                routes = [r for r in (biller.alert_routes() if biller else []) if alert.kind in r.kinds]
                try:
                    for route in routes:
                        send(route, alert, context)
                except Exception as exc:  # the next run sends it again; the others still go out
                    self.log.error("alert %s for %s %s not sent: %s", alert.kind, notice.biller_id, notice.flow, exc)
                    failed.append(f"{notice.biller_id}/{notice.flow}/{alert.kind}")
                    continue
                sent(engine, notice)
                delivered += bool(routes)
                self.log.info("alert %s for %s %s: %s route(s)", alert.kind, notice.biller_id, notice.flow,
                              len(routes))
        finally:
            engine.dispose()
        if failed:
            raise AirflowException(f"{len(failed)} alert(s) not sent (sent by the next run): {', '.join(failed)}")
        return {"rows": len(rows), "sent": delivered}
