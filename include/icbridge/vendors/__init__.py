"""The CIS vendor registry: one module per Harris system, each declaring one CisVendor.

    vendor("inhance").flows          # what a biller of that CIS can have
    vendor(biller.cis).connect(biller).read_balance(account, invoice)

Adding a vendor: a module here with its CisVendor subclass (flows, hook, CisService over
its client, labels), listed in VENDORS; its hook's connection type in provider_info.py
(docs/architecture.md, "Adding a CIS vendor"). An unknown ``cis`` fails the biller file's
validation naming the known ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from icbridge.vendors.aus import AUS
from icbridge.vendors.base import (
    FLOWS,
    SYNC_FLOWS,
    WEB_SERVICE_FLOWS,
    BalanceReading,
    ChangeKind,
    CisService,
    CisVendor,
    Flow,
    PaymentAnswer,
    PaymentPost,
)
from icbridge.vendors.inhance import INHANCE
from icbridge.vendors.logis import LOGIS

if TYPE_CHECKING:
    from icbridge.config.biller import CisServiceConfig

__all__ = [
    "FLOWS", "SYNC_FLOWS", "VENDORS", "WEB_SERVICE_FLOWS", "BalanceReading", "ChangeKind", "CisService", "CisVendor",
    "Flow", "PaymentAnswer", "PaymentPost", "check_cis_service", "vendor",
]

VENDORS: dict[str, CisVendor] = {v.name: v for v in (INHANCE, AUS, LOGIS)}


def vendor(name: str) -> CisVendor:
    """The registered vendor of this ``cis`` name; ValueError naming the known ones."""
    found = VENDORS.get(name)
    if found is None:
        raise ValueError(f"unknown cis {name!r}; known: {', '.join(VENDORS)}")
    return found


def check_cis_service(name: str, cis: CisServiceConfig) -> None:
    """The cross-checks of a biller's cis_service section against its vendor: the vendor has
    web services, no setting another vendor takes alone, known method names. ValueError
    names the field."""
    this = vendor(name)
    if not this.has_web_services:
        raise ValueError(f"cis {name} has no web services; remove cis_service")
    given = [f for v in VENDORS.values() if v is not this for f in v.settings_only
             if f in cis.model_fields_set and f not in this.settings_only]
    if given:
        owners = sorted(v.name for v in VENDORS.values() if set(given) & set(v.settings_only))
        raise ValueError(f"{', '.join(dict.fromkeys(given))}: only for cis {', '.join(owners)} (this biller is {name})")
    unknown = sorted(set(cis.method_conn_ids) - set(this.methods()))
    if unknown:
        raise ValueError(f"method_conn_ids: unknown {name} method(s) {', '.join(unknown)}; "
                         f"known: {', '.join(this.methods())}")
