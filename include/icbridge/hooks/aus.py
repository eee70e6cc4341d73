"""Airflow hook for the Harris AUS (CIS Infinity) web service: a thin shell over AusClient.

Connection (conn_type ``aus_cis``): host = the service's .asmx URL, password = web service
key, extra {"timeout": 30, "ca_file": ..., "verify": true}. The biller YAML names it in
``cis_service.conn_id``; ``cis_service.method_conn_ids`` may point a method at another
connection (e.g. RetrieveBillPrintImageV2 on the biller's PdfViewer service). See
icbridge.hooks.cis for why one connection per endpoint.
"""

from __future__ import annotations

from typing import Any

from icbridge.hooks.cis import PROBE_ACCOUNT, CisHookBase
from icbridge.soap.aus import AusClient
from icbridge.soap.cis import CisEndpoint, CisResult


class AusHook(CisHookBase):
    """Hook giving an :class:`AusClient` for one AUS biller."""

    default_conn_name = "aus_cis_default"
    conn_type = "aus_cis"
    hook_name = "Harris AUS (CIS Infinity)"
    service_label = "AUS"
    placeholder_url = "https://cis.example-biller.gov/AusCisService.asmx"

    def _build_client(self, endpoints: dict[str, CisEndpoint], options: dict[str, Any]) -> AusClient:
        return AusClient(endpoints, **options)

    def get_conn(self) -> AusClient:
        return super().get_conn()

    def _probe(self, client: AusClient) -> CisResult:
        return client.get_account_data(PROBE_ACCOUNT)
