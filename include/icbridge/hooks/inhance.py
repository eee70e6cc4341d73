"""Airflow hook for Harris inHance v2 (``iCloud.asmx``): a thin shell over InhanceClient.

Connection (conn_type ``inhance``), one per distinct endpoint (see icbridge.hooks.cis):
    host      the iCloud.asmx URL, e.g. ``https://cis.example-biller.gov/icloud/icloud.asmx``
    password  the web service password (key) of that endpoint
    extra     {"timeout": 30, "ca_file": "/path/ca.pem", "verify": true}   (default connection)
The biller YAML names the default connection (``cis_service.conn_id``) and, per method whose
URL/password differ, another one (``cis_service.method_conn_ids``: BalanceCheck = settings 8
(+ default password), MakePaymentExtended = 11/13, SetPaperless = 14/16, SetAutopay = 17/19,
SetEmail = its own, else SetPaperless's).
"""

from __future__ import annotations

from typing import Any

from icbridge.hooks.cis import PROBE_ACCOUNT, CisHookBase
from icbridge.soap.cis import CisEndpoint, CisResult
from icbridge.soap.inhance import InhanceClient


class InhanceHook(CisHookBase):
    """Hook giving an :class:`InhanceClient` for one inHance biller."""

    default_conn_name = "inhance_default"
    conn_type = "inhance"
    hook_name = "Harris inHance (iCloud)"
    service_label = "inHance"
    placeholder_url = "https://cis.example-biller.gov/icloud/icloud.asmx"

    def _build_client(self, endpoints: dict[str, CisEndpoint], options: dict[str, Any]) -> InhanceClient:
        return InhanceClient(endpoints, **options)

    def get_conn(self) -> InhanceClient:
        return super().get_conn()

    def _probe(self, client: InhanceClient) -> CisResult:
        return client.balance_check(PROBE_ACCOUNT, 0)
