"""Biller configuration: one YAML file per biller in include/billers/, validated.

The file names connection ids only; biller GUIDs, web-service keys and passwords live in
Airflow Connections (or a secrets backend). Unknown keys are errors, so a typo is caught
at parse time with the file and the field named.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from icbridge.errors import ConfigError
from icbridge.mapping.types import DEFAULT_MAX_BYTES_PER_FILE, InvoiceSettings
from icbridge.vendors import FLOWS, SYNC_FLOWS, VENDORS, CisVendor, Flow, check_cis_service, vendor

SLUG = r"^[a-z][a-z0-9_]{1,62}$"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransferConfig(_Strict):
    """Where the biller's CIS drops its files, and how we reach it."""

    protocol: Literal["ftps", "sftp"] = "ftps"
    conn_id: ConnId
    inbox: str = "/"
    archive: str = "archive"  # relative to the inbox, or absolute

    def archive_dir(self) -> str:
        if self.archive.startswith("/"):
            return self.archive
        return f"{self.inbox.rstrip('/')}/{self.archive}"


class ExpectedFiles(_Strict):
    """When the biller's IC Daily Export is due (docs/operations.md, "What did not happen"):
    a file every due day (``days``: ``business`` = Monday-Friday except ``holidays``, or
    ``daily``) by ``by`` (HH:MM, the biller's time zone); ``grace_minutes`` after that with
    no file since the due day before, the invoices flow is ``late`` (health page, CLI, alerts)."""

    days: Literal["business", "daily"] = "business"
    by: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "06:00"
    grace_minutes: int = Field(120, ge=0, le=24 * 60)
    holidays: list[date] = Field(default_factory=list)


class InvoicesConfig(_Strict):
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


class PaymentExportConfig(_Strict):
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


class CisServiceConfig(_Strict):
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


class BalanceAllConfig(_Strict):
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


class SyncConfig(_Strict):
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


class AlertRoute(_Strict):
    """Where this biller's alerts of ``kinds`` go: any Airflow notifier (``notifier``, its
    import path; default the smtp provider's SmtpNotifier) built with ``params`` (Jinja
    templates rendered with ``alert``: ``alert.subject``, ``alert.text``, ``alert.html``,
    ``alert.kind``, ``alert.biller_id``, ``alert.flow``, ``alert.link``). Secrets stay in the
    notifier's Airflow connection (``smtp_conn_id``, ``slack_conn_id``, ...), never here."""

    kinds: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS))
    notifier: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")] = SMTP_NOTIFIER
    params: dict[str, object] = Field(default_factory=dict)


class BillerConfig(_Strict):
    biller_id: Annotated[str, Field(pattern=SLUG)]
    bid: Annotated[str, Field(pattern=r"^\d{1,10}$")]
    name: str
    cis: str  # a registered CIS vendor (icbridge.vendors): aus, inhance, logis
    timezone: str = "America/New_York"
    owner: str = "data-engineering"
    ic_conn_id: ConnId
    retries: int = Field(3, ge=0, le=20)
    alert_emails: list[str] = Field(default_factory=list)
    # alerts (docs/operations.md): routes by kind to Airflow notifiers; none given and alert_emails set: every
    # kind by email (SmtpNotifier over the Airflow connection icb_alerts_smtp)
    alerts: list[AlertRoute] = Field(default_factory=list)
    # FAB auth manager roles that may read this biller's DAGs and pages (and, edit_roles, also run and clear
    # them): the DAGs' access_control. SimpleAuthManager has no per-DAG rights and ignores them (docs/operations.md)
    access_roles: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    edit_roles: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    invoices: InvoicesConfig | None = None
    cis_service: CisServiceConfig | None = None
    payment_export: PaymentExportConfig | None = None
    balance_all: BalanceAllConfig | None = None
    sync: SyncConfig | None = None

    @field_validator("cis")
    @classmethod
    def _cis_is_a_registered_vendor(cls, value: str) -> str:
        vendor(value)  # ValueError names the known ones
        return value

    @field_validator("balance_all")
    @classmethod
    def _balance_all_needs_a_cis_service(
        cls, value: BalanceAllConfig | None, info: ValidationInfo
    ) -> BalanceAllConfig | None:
        if value is not None:
            _needs_web_services("balance_all", "Balance All needs", "Balance All asks the CIS for balances", info)
        return value

    @field_validator("sync")
    @classmethod
    def _sync_needs_a_cis_service(cls, value: SyncConfig | None, info: ValidationInfo) -> SyncConfig | None:
        if value is not None:
            _needs_web_services("balances", "the sync flows need", "the sync flows call the CIS web services", info)
        return value

    def sync_settings(self) -> SyncConfig:
        """The biller's ``sync`` section, or the defaults when it has none."""
        return self.sync or SyncConfig()

    def alert_routes(self) -> list[AlertRoute]:
        """The biller's alert routes: its ``alerts``, or email to ``alert_emails`` for every kind."""
        if self.alerts:
            return list(self.alerts)
        if not self.alert_emails:
            return []
        return [AlertRoute(params={"to": list(self.alert_emails), "smtp_conn_id": ALERTS_SMTP_CONN,
                                   "subject": "{{ alert.subject }}", "html_content": "{{ alert.html }}"})]

    def invoices_config(self) -> InvoicesConfig:
        """The biller's ``invoices`` section; ValueError for a biller without one."""
        if self.invoices is None:
            raise ValueError(f"biller {self.biller_id} has no invoices section")
        return self.invoices

    def payment_export_config(self) -> PaymentExportConfig:
        """The biller's ``payment_export`` section; ValueError for a biller without one."""
        if self.payment_export is None:
            raise ValueError(f"biller {self.biller_id} has no payment_export section")
        return self.payment_export

    def vendor(self) -> CisVendor:
        """The biller's CIS vendor (icbridge.vendors)."""
        return vendor(self.cis)

    def flows(self) -> list[Flow]:
        """Every flow this biller gets a DAG for, in FLOWS order: the one answer to "which
        flows does this biller have" (the DAG builders, the health page and preflight ask it).
        A flow needs its vendor's support and its section: invoices, payment_export,
        balance_all; the sync flows a cis_service and ``sync.flows`` (all three by default)."""
        supported = self.vendor().flows
        has: set[Flow] = set()
        if self.invoices is not None:
            has.add("invoices")
        if self.payment_export is not None:
            has.add("payment_export")
        if self.cis_service is not None:
            if self.balance_all is not None:
                has.add("balance_all")
            has.update(self.sync_settings().flows)
        return [flow for flow in FLOWS if flow in has and flow in supported]

    def sync_flows(self) -> list[str]:
        """The sync flows this biller gets a DAG for (a CIS with web services and a cis_service)."""
        return [flow for flow in self.flows() if flow in SYNC_FLOWS]

    @field_validator("cis_service")
    @classmethod
    def _cis_service_fits_cis(cls, value: CisServiceConfig | None, info: ValidationInfo) -> CisServiceConfig | None:
        if value is not None and "cis" in info.data:
            value.check_for(info.data["cis"])
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def invoice_settings(self, biller_guid: str) -> InvoiceSettings:
        """What the mapping needs; the GUID comes from the IC connection, never from YAML."""
        inv = self.invoices
        if inv is None:
            raise ValueError(f"biller {self.biller_id} has no invoices section")
        return InvoiceSettings(
            bid=self.bid,
            biller_guid=biller_guid,
            invoice_format_guid=inv.invoice_format_guid,
            invoice_type_id=inv.invoice_type_id,
            multiple_meters=inv.multiple_meters,
            max_invoices_per_file=inv.max_invoices_per_file,
            max_bytes_per_file=inv.max_bytes_per_file,
            reject_threshold_pct=inv.reject_threshold_pct,
            column_aliases=dict(inv.column_aliases),
        )


def default_billers_dir() -> Path:
    """ICBRIDGE_BILLERS_DIR, else include/billers beside the package (repo and image alike)."""
    configured = os.environ.get("ICBRIDGE_BILLERS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "billers"


class BillerConfigError(ConfigError, ValueError):
    """A biller file that cannot be used; the message names the file and the field."""


def _yaml_position(root: yaml.Node | None, loc: tuple) -> str:
    """``line:column`` (1-based) in the YAML of the value at ``loc`` — or of the mapping that
    lacks it (a missing field), or of the key itself (an unknown field)."""
    node = root
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if match is None:
                break
            node = match[1] if step != loc[-1] else match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            break
    if node is None:
        return "1:1"
    return f"{node.start_mark.line + 1}:{node.start_mark.column + 1}"


_YAML11_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")


class _BillerLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what YAML 1.1 reads otherwise than a person does: an
    unquoted ``050000`` is octal 20480 there. Refused with its position (write 50000, or quote it)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if _YAML11_OCTAL.match(text):
            raise yaml.constructor.ConstructorError(
                None, None, f"{text} has a leading zero, which YAML 1.1 reads as the octal number "
                f"{super().construct_yaml_int(node)}: write it without the zero (or quote it if it is text)",
                node.start_mark)
        return super().construct_yaml_int(node)


_BillerLoader.add_constructor("tag:yaml.org,2002:int", _BillerLoader.construct_yaml_int)


def load_biller(path: Path) -> BillerConfig:
    """The validated biller file. BillerConfigError lists *every* problem, one a line, each
    as ``file:line:column: field: message`` (YAML syntax errors with their position too)."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.load(text, Loader=_BillerLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise BillerConfigError(f"{where}: not valid YAML: {problem or exc}") from None
    if not isinstance(raw, dict):
        raise BillerConfigError(f"{path}:1:1: expected a mapping of settings at the top level")
    try:
        config = BillerConfig.model_validate(raw)
    except ValidationError as exc:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # positions, only when there is something to point at
        lines = [
            f"{path}:{_yaml_position(root, tuple(err['loc']))}: {'.'.join(str(p) for p in err['loc']) or '(top level)'}"
            f": {err['msg']}"
            for err in exc.errors()
        ]
        raise BillerConfigError("\n".join(lines)) from None
    if config.biller_id != path.stem:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raise BillerConfigError(f"{path}:{_yaml_position(root, ('biller_id',))}: biller_id: {config.biller_id!r} "
                                f"must equal the file name {path.stem!r}")
    return config


@dataclass(frozen=True)
class LoadedBillers:
    billers: list[BillerConfig]
    errors: dict[Path, str]  # file -> message, for the files that could not be used


def load_billers(folder: Path, paths: list[Path] | None = None) -> LoadedBillers:
    """Every *.yaml in folder (or just ``paths``); a broken file is reported, the others still load."""
    billers, errors = [], {}
    for path in sorted(folder.glob("*.yaml")) if paths is None else paths:
        try:
            billers.append(load_biller(path))
        except BillerConfigError as exc:
            errors[path] = str(exc)
    return LoadedBillers(billers, errors)


def _needs_web_services(flow: Flow, needs: str, why: str, info: ValidationInfo) -> None:
    """A section of ``flow`` needs a vendor that supports it and a cis_service section."""
    cis = info.data.get("cis")
    if cis is None:  # the cis field itself failed: its error says so
        return
    if flow not in vendor(cis).flows:
        able = [v.label for v in VENDORS.values() if flow in v.flows]
        raise ValueError(f"{needs} an {' or '.join(able)} CIS (this biller is {cis})")
    if "cis_service" in info.data and info.data["cis_service"] is None:
        raise ValueError(f"{why}: add a cis_service section")
