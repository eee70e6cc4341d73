"""The sections of a biller file (icbridge.config.biller.BillerConfig): each a strict pydantic
model, so an unknown key is an error naming the file and the field."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from icbridge.mapping.types import DEFAULT_MAX_BYTES_PER_FILE
from icbridge.vendors import check_cis_service

__all__ = ["ALERTS_SMTP_CONN", "ALERT_KINDS", "GUID", "SLUG", "SMTP_NOTIFIER", "AlertKind", "AlertRoute",
           "BalanceAllConfig", "CisServiceConfig", "ConnId", "ExpectedFiles", "InvoicesConfig", "PaymentExportConfig",
           "Strict", "SyncConfig", "SyncFlow", "TransferConfig"]

SLUG = r"^[a-z][a-z0-9_]{1,62}$"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransferConfig(Strict):
    """Where the biller's CIS drops its files, and how we reach it."""

    protocol: Literal["ftps", "sftp"] = "ftps"
    conn_id: ConnId
    inbox: str = "/"
    archive: str = "archive"  # relative to the inbox, or absolute

    def archive_dir(self) -> str:
        if self.archive.startswith("/"):
            return self.archive
        return f"{self.inbox.rstrip('/')}/{self.archive}"


class ExpectedFiles(Strict):
    """When the biller's IC Daily Export is due (docs/operations.md, "What did not happen"):
    a file every due day (``days``: ``business`` = Monday-Friday except ``holidays``, or
    ``daily``) by ``by`` (HH:MM, the biller's time zone); ``grace_minutes`` after that with
    no file since the due day before, the invoices flow is ``late`` (health page, CLI, alerts)."""

    days: Literal["business", "daily"] = "business"
    by: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "06:00"
    grace_minutes: int = Field(120, ge=0, le=24 * 60)
    holidays: list[date] = Field(default_factory=list)


class InvoicesConfig(Strict):
    """The `<biller>__invoices` flow: AUS TXT -> BIF -> UploadInvoiceFile."""

    schedule: str = "0 */3 * * *"
    transfer: TransferConfig
    invoice_format_guid: str
    invoice_type_id: str
    bill_types: list[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,8}$")]] | None = None
    multiple_meters: bool = False
    max_invoices_per_file: int = Field(50_000, ge=1)
    max_bytes_per_file: int = Field(DEFAULT_MAX_BYTES_PER_FILE, ge=4096)  # a BIF part's size bound too
    reject_threshold_pct: float = Field(5.0, ge=0, le=100)
    upload_in_flight: int = Field(2, ge=1, le=4)  # BIF parts of one file sent at once (docs/operations.md)
    column_aliases: dict[str, str] = Field(default_factory=dict)
    expected: ExpectedFiles = Field(default_factory=ExpectedFiles)

    @field_validator("invoice_format_guid")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not GUID.match(value):
            raise ValueError("must be a GUID like 1918BF19-973B-4930-800E-2005C652C62A")
        return value

    @field_validator("column_aliases")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from icbridge.layouts.aus import columns

        known = {c.name for c in columns()}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown AUS column(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return value


class PaymentExportConfig(Strict):
    """The `<biller>__payment_export` flow (cis: logis): the daily CloudPay Payment Export File.

    ``schedule`` is a cron in the biller's time zone; any schedule exports the last business
    day closed (23:59 local) at or before the run's logical date. ``delivery``: ``sftp`` or
    ``ftps`` (``conn_id`` = transfer connection, file put in ``folder``) or ``email``
    (``conn_id`` = SMTP connection, sent to ``email_to``). See docs/payment-export.md.
    """

    schedule: str = "59 23 * * *"
    delivery: Literal["sftp", "ftps", "email"]
    conn_id: ConnId
    folder: str = "/"
    email_to: list[Annotated[str, Field(pattern=r"^[^@\s,;]+@[^@\s,;]+\.[A-Za-z]{2,}$")]] = Field(default_factory=list)
    email_from: str | None = None  # default: the SMTP connection's from_email
    empty_day_file: bool = True
    channel: str = "CloudPay"
    payment_types: dict[str, Literal["CC", "ACH", "CASH", "CHECK"]] = Field(default_factory=dict)
    # a run exports every business day since the last one exported, oldest first; a longer
    # gap fails the run and names the backfill command (docs/payment-export.md)
    max_catchup_days: int = Field(7, ge=1, le=366)

    @model_validator(mode="after")
    def _recipients(self) -> PaymentExportConfig:
        if self.delivery == "email" and not self.email_to:
            raise ValueError("delivery 'email' needs email_to (one address or more)")
        if self.delivery != "email" and self.email_to:
            raise ValueError(f"email_to is only for delivery 'email', not {self.delivery!r}")
        return self

    def transfer(self) -> TransferConfig | None:
        """The FTP-family endpoint as a TransferConfig (inbox = delivery folder); None for email."""
        if self.delivery == "email":
            return None
        return TransferConfig(protocol=self.delivery, conn_id=self.conn_id, inbox=self.folder)


class CisServiceConfig(Strict):
    """How we reach the biller's CIS web services (inHance iCloud.asmx or AUS); see docs/cis-services.md.

    ``conn_id`` is the default endpoint (host = URL, password = key). ``method_conn_ids`` names
    one connection per method whose URL/password differ (inHance advanced settings 8, 11+13,
    14+16, 17+19; SetEmail follows SetPaperless unless named). Rule settings: rtdr_version
    (1: Balance -> BalanceDue; 2: also FutureBalance -> TotalAmountDue), rtdr_updates_email
    (INT-8748) and paypal_payment_type (setting 116) are inHance-only.
    """

    conn_id: ConnId
    method_conn_ids: dict[str, ConnId] = Field(default_factory=dict)
    rtdr_version: Literal[1, 2] = 1
    rtdr_updates_email: bool = False
    paypal_payment_type: Annotated[str, Field(min_length=1, max_length=50)] = "Credit Card"
    calls_in_flight: int = Field(8, ge=1, le=64)
    calls_per_second: float = Field(20.0, gt=0, le=1000)
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    # the endpoint this service shares with other billers (e.g. inHance's hosted iCloud.asmx): billers that name
    # the same endpoint share one Airflow pool, icb_cis_<endpoint>, bounding their calls together; default conn_id
    endpoint: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,60}$")] | None = None

    def check_for(self, cis: str) -> None:
        """Cross-checks that need the biller's ``cis`` (its vendor's settings and methods,
        icbridge.vendors.check_cis_service); ValueError names the field."""
        check_cis_service(cis, self)

    def conn_ids(self) -> list[str]:
        """Every connection id this section names (default first), without repeats."""
        return list(dict.fromkeys([self.conn_id, *self.method_conn_ids.values()]))


class BalanceAllConfig(Strict):
    """The weekly `<biller>__balance_all` reconciliation (spec balance-all.md). The CIS call bounds
    (calls_in_flight, calls_per_second, timeout_seconds) are the biller's ``cis_service`` ones."""

    schedule: str = "0 6 * * 0"  # Sundays 06:00 in the biller's time zone
    corrections_allowed: bool = False
    error_threshold_pct: float = Field(2.0, ge=0, le=100)
    page_size: int = Field(500, ge=1, le=1000)  # ListOpenInvoices page size
    attempts: int = Field(3, ge=1, le=10)  # per CIS call, for timeouts and transport faults
    backoff_seconds: float = Field(1.0, ge=0, le=60)
    backoff_max_seconds: float = Field(30.0, ge=0, le=600)


SyncFlow = Literal["balances", "payments", "customer_changes"]
_ALL_SYNC_FLOWS: tuple[SyncFlow, ...] = ("balances", "payments", "customer_changes")


class SyncConfig(Strict):
    """The 15-minute/hourly web-service flows of an inHance/AUS biller (docs/sync-flows.md).

    Optional: a biller with a ``cis_service`` gets all three DAGs with the seed 003 cadences.
    ``flows`` turns DAGs off; ``payments_skip_channels`` are IC channels the data pump never
    sends (CloudPay: taken in the biller's office, not supported by the inHance/AUS pump).
    """

    flows: list[SyncFlow] = Field(default_factory=lambda: list(_ALL_SYNC_FLOWS))
    balances_schedule: str = "*/15 * * * *"
    payments_schedule: str = "*/15 * * * *"
    customer_changes_schedule: str = "0 * * * *"
    balances_from_change_log: bool = True  # also refresh accounts seen in IC's change log
    payments_skip_channels: list[str] = Field(default_factory=lambda: ["CloudPay"])
    attempts: int = Field(3, ge=1, le=10)  # per read / idempotent setter on transport faults
    backoff_seconds: float = Field(0.5, ge=0, le=60)
    # watermarks (docs/sync-flows.md): re-read this much before the watermark for late arrivals,
    # read IC in windows of at most this, fail a run still further behind than max_lag_minutes
    lookback_minutes: int = Field(120, ge=0, le=7 * 24 * 60)
    max_read_window_minutes: int = Field(60, ge=5, le=24 * 60)
    max_lag_minutes: int = Field(180, ge=15, le=30 * 24 * 60)
    # handled changes / balance activity are remembered this long behind the watermark: a backfill
    # older than this may send a change or refresh a balance again (payments: the ledger, forever)
    items_retention_days: int = Field(35, ge=1, le=3660)


AlertKind = Literal["late", "behind", "failed", "in_doubt", "rejected", "recovered"]
ALERT_KINDS: tuple[AlertKind, ...] = ("late", "behind", "failed", "in_doubt", "rejected", "recovered")
SMTP_NOTIFIER = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
ALERTS_SMTP_CONN = "icb_alerts_smtp"


class AlertRoute(Strict):
    """Where this biller's alerts of ``kinds`` go: any Airflow notifier (``notifier``, its
    import path; default the smtp provider's SmtpNotifier) built with ``params`` (Jinja
    templates rendered with ``alert``: ``alert.subject``, ``alert.text``, ``alert.html``,
    ``alert.kind``, ``alert.biller_id``, ``alert.flow``, ``alert.link``). Secrets stay in the
    notifier's Airflow connection (``smtp_conn_id``, ``slack_conn_id``, ...), never here."""

    kinds: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS))
    notifier: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")] = SMTP_NOTIFIER
    params: dict[str, object] = Field(default_factory=dict)
