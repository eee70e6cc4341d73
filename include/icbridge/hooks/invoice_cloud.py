"""Airflow hook for the Invoice Cloud web services: a thin shell over InvoiceCloudClient.

Why a hook: credentials live only in an Airflow Connection (or a secrets backend), and
Airflow's UI and ``test_connection`` need a provider-style hook class. All SOAP logic is in
:mod:`icbridge.soap.invoice_cloud`, which imports no Airflow.

Connection (conn_type ``invoice_cloud``):
    host      web-services base URL, e.g. ``https://www.invoicecloud.com/portal/webservices``
              (the three ``.asmx`` endpoints are under it)
    login     BillerGUID
    password  WebServiceKey
    extra     {"timeout": 60, "ca_file": "/path/ca.pem", "verify": true}
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.log import mask_secret

from icbridge.hooks.base import FailFastConnection
from icbridge.hooks.ftps import parse_bool
from icbridge.soap.invoice_cloud import InvoiceCloudClient


def transport_extras(extra: dict[str, Any]) -> dict[str, Any]:
    """The SOAP transport's options from a connection's extra (IC, inHance, AUS alike):
    ``proxy`` (egress proxy URL, e.g. ``http://proxy.internal:3128``; none by default) and
    ``max_answer_mb`` (largest answer accepted, default 128 MiB: a 50 MB bill PDF as base64)."""
    options: dict[str, Any] = {"proxy": extra.get("proxy") or None}
    if extra.get("max_answer_mb") is not None:
        options["max_answer_bytes"] = int(float(extra["max_answer_mb"]) * (1 << 20))
    return options


class InvoiceCloudHook(FailFastConnection, BaseHook):
    """Hook giving an :class:`InvoiceCloudClient` for the biller of one Airflow connection."""

    conn_name_attr = "ic_conn_id"
    default_conn_name = "invoice_cloud_default"
    conn_type = "invoice_cloud"
    hook_name = "Invoice Cloud"

    def __init__(self, ic_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ic_conn_id = ic_conn_id
        self._client: InvoiceCloudClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connections form: IC names for login/password; schema and port mean nothing here."""
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {
                "host": "Web services base URL",
                "login": "Biller GUID",
                "password": "Web service key",
            },
            "placeholders": {
                "host": "https://www.invoicecloud.com/portal/webservices",
                "login": "00000000-0000-0000-0000-000000000000",
                "extra": json.dumps({"timeout": 60, "ca_file": "/path/to/ca.pem", "verify": True,
                                     "proxy": "http://proxy.internal:3128", "max_answer_mb": 128}),
            },
        }

    @staticmethod
    def _base_url(host: str, port: int | None, schema: str | None) -> str:
        """host is normally the full base URL; a bare host (URI-style connection) gets https."""
        host = (host or "").strip()
        if not host:
            raise ValueError("the Invoice Cloud connection has no host (web services base URL)")
        if "://" in host:
            return host.rstrip("/")
        netloc = f"{host}:{port}" if port else host
        path = f"/{schema.strip('/')}" if schema else ""
        return f"https://{netloc}{path}"

    def get_conn(self) -> InvoiceCloudClient:
        """Build (once per hook) the client from the connection; masks both credentials in logs."""
        if self._client is not None:
            return self._client
        conn = self.get_connection(self.ic_conn_id)
        if not conn.login or not conn.password:
            raise ValueError(f"connection {self.ic_conn_id!r} needs login (Biller GUID) and password (key)")
        mask_secret(conn.password)
        mask_secret(conn.login)
        extra = conn.extra_dejson or {}
        self._client = InvoiceCloudClient(
            self._base_url(conn.host or "", conn.port, conn.schema),
            conn.login,
            conn.password,
            timeout=float(extra.get("timeout", 60)),
            ca_file=extra.get("ca_file") or None,
            verify=parse_bool(extra.get("verify"), True, "verify"),
            **transport_extras(extra),
        )
        return self._client

    @property
    def biller_guid(self) -> str:
        return self.get_conn().biller_guid

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated call (ListOpenInvoices, page 1 of size 1)."""
        try:
            page = self.get_conn().list_open_invoices(page_number=1, page_size=1)
        except Exception as exc:  # the UI wants a message, whatever went wrong
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connected to Invoice Cloud: {page.total_count} open invoices"
