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
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from icbridge.mapping.aus_to_bif import InvoiceSettings

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


class InvoicesConfig(_Strict):
    """The `<biller>__invoices` flow: AUS TXT -> BIF -> UploadInvoiceFile."""

    schedule: str = "0 */3 * * *"
    transfer: TransferConfig
    invoice_format_guid: str
    invoice_type_id: str
    bill_types: list[Annotated[str, Field(pattern=r"^[A-Z0-9]{1,8}$")]] | None = None
    multiple_meters: bool = False
    max_invoices_per_file: int = Field(50_000, ge=1)
    reject_threshold_pct: float = Field(5.0, ge=0, le=100)
    column_aliases: dict[str, str] = Field(default_factory=dict)

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


class BillerConfig(_Strict):
    biller_id: Annotated[str, Field(pattern=SLUG)]
    bid: Annotated[str, Field(pattern=r"^\d{1,10}$")]
    name: str
    cis: Literal["aus", "inhance", "logis"]
    timezone: str = "America/New_York"
    owner: str = "data-engineering"
    ic_conn_id: ConnId
    retries: int = Field(3, ge=0, le=20)
    alert_emails: list[str] = Field(default_factory=list)
    invoices: InvoicesConfig | None = None

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
            reject_threshold_pct=inv.reject_threshold_pct,
            column_aliases=dict(inv.column_aliases),
        )


def default_billers_dir() -> Path:
    """ICBRIDGE_BILLERS_DIR, else include/billers beside the package (repo and image alike)."""
    configured = os.environ.get("ICBRIDGE_BILLERS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "billers"


class BillerConfigError(ValueError):
    """A biller file that cannot be used; the message names the file and the field."""


def load_biller(path: Path) -> BillerConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BillerConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BillerConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        config = BillerConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        ]
        raise BillerConfigError("\n".join(lines)) from None
    if config.biller_id != path.stem:
        raise BillerConfigError(f"{path}: biller_id: {config.biller_id!r} must equal the file name {path.stem!r}")
    return config


@dataclass(frozen=True)
class LoadedBillers:
    billers: list[BillerConfig]
    errors: dict[Path, str]  # file -> message, for the files that could not be used


def load_billers(folder: Path) -> LoadedBillers:
    """Every *.yaml in folder; a broken file is reported, the others still load."""
    billers, errors = [], {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            billers.append(load_biller(path))
        except BillerConfigError as exc:
            errors[path] = str(exc)
    return LoadedBillers(billers, errors)
