"""Biller configuration: one YAML file per biller in include/billers/, validated.

The file names connection ids only; biller GUIDs, web-service keys and passwords live in
Airflow Connections (or a secrets backend). Unknown keys are errors, so a typo is caught
at parse time with the file and the field named.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from icbridge.config.sections import (  # re-exported: the biller file's sections
    ALERT_KINDS,
    ALERTS_SMTP_CONN,
    GUID,
    SLUG,
    SMTP_NOTIFIER,
    AlertKind,
    AlertRoute,
    BalanceAllConfig,
    CisServiceConfig,
    ConnId,
    ExpectedFiles,
    InvoicesConfig,
    PaymentExportConfig,
    Strict,
    SyncConfig,
    SyncFlow,
    TransferConfig,
)
from icbridge.errors import ConfigError
from icbridge.mapping.types import InvoiceSettings
from icbridge.vendors import FLOWS, SYNC_FLOWS, VENDORS, CisVendor, Flow, vendor

__all__ = ["ALERTS_SMTP_CONN", "ALERT_KINDS", "GUID", "SLUG", "SMTP_NOTIFIER", "AlertKind", "AlertRoute",
           "BalanceAllConfig", "BillerConfig", "BillerConfigError", "CisServiceConfig", "ConnId", "ExpectedFiles",
           "InvoicesConfig", "LoadedBillers", "PaymentExportConfig", "SyncConfig", "SyncFlow", "TransferConfig",
           "default_billers_dir", "load_biller", "load_billers"]


class BillerConfig(Strict):
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
