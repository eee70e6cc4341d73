"""Harris Logis: no web services; IC's payments reach it as the daily CloudPay Payment
Export File (specs/logis-payment-export.md, docs/payment-export.md)."""

from __future__ import annotations

from typing import ClassVar

from icbridge.vendors.base import CisService, CisVendor, Flow


class Logis(CisVendor):
    name = "logis"
    label = "Logis"
    flows: ClassVar[frozenset[Flow]] = frozenset({"payment_export"})

    def service(self, client: object) -> CisService:
        raise ValueError("cis logis has no web services")


LOGIS = Logis()
