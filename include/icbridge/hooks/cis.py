"""What the inHance and AUS hooks share: one Airflow connection per distinct CIS endpoint.

Why one connection per endpoint (not per-method URLs and passwords in one connection's
extra): Airflow masks and encrypts a connection's password field and a secrets backend
stores it as a secret, but extra JSON is shown in the Connections UI and is easy to leak
into logs. Each inHance method may have its own URL *and* password (rule 6), so each
distinct endpoint is a normal connection (host = URL, password = key), named in the
biller YAML (``cis_service.conn_id`` default, ``cis_service.method_conn_ids`` per method).

A per-method connection without a password uses the default connection's (inHance setting 8
gives an RTDR URL but no RTDR password). Client options (timeout, ca_file, verify) come
from the default connection's extra; ``timeout`` given to the hook (the biller YAML's
``timeout_seconds``) wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.log import mask_secret

from icbridge.hooks.base import FailFastConnection
from icbridge.hooks.ftps import parse_bool
from icbridge.hooks.invoice_cloud import InvoiceCloudHook, transport_extras
from icbridge.soap.cis import DEFAULT, CisEndpoint, CisResult

if TYPE_CHECKING:
    from icbridge.config.biller import BillerConfig

PROBE_ACCOUNT = "0"
"""Account number test_connection asks for: "not found" proves URL and key work."""


class CisHookBase(FailFastConnection, BaseHook):
    """Base of InhanceHook / AusHook: builds the client from one or more connections."""

    conn_name_attr = "cis_conn_id"
    default_conn_name: ClassVar[str] = "cis_default"
    service_label: ClassVar[str] = "CIS"
    placeholder_url: ClassVar[str] = "https://cis.example-biller.gov/service.asmx"

    def __init__(
        self,
        cis_conn_id: str | None = None,
        method_conn_ids: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        pool_maxsize: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cis_conn_id = cis_conn_id or self.default_conn_name
        self.method_conn_ids = dict(method_conn_ids or {})
        self.timeout = timeout
        self.pool_maxsize = pool_maxsize
        self._client: Any = None

    @classmethod
    def for_biller(cls, biller: BillerConfig) -> Self:
        """The hook for a biller's ``cis_service`` section (connections, timeout, calls in flight)."""
        cis = biller.cis_service
        if cis is None:
            raise ValueError(f"biller {biller.biller_id} has no cis_service section")
        return cls(
            cis.conn_id,
            cis.method_conn_ids,
            timeout=cis.timeout_seconds,
            pool_maxsize=max(cis.calls_in_flight, 1),
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": f"{cls.service_label} endpoint URL (.asmx)", "password": "Web service key"},
            "placeholders": {
                "host": cls.placeholder_url,
                "extra": json.dumps({"timeout": 30, "ca_file": "/path/to/ca.pem", "verify": True}),
            },
        }

    def endpoints(self) -> dict[str, CisEndpoint]:
        """method (or "default") -> endpoint, from the connections; every password is masked."""
        default = self.get_connection(self.cis_conn_id)
        if not default.password:
            raise ValueError(f"connection {self.cis_conn_id!r} needs a password (the web service key)")
        mask_secret(default.password)
        default_url = InvoiceCloudHook._base_url(default.host or "", default.port, default.schema)
        out = {DEFAULT: CisEndpoint(default_url, default.password)}
        for method, conn_id in self.method_conn_ids.items():
            conn = default if conn_id == self.cis_conn_id else self.get_connection(conn_id)
            if conn.password:
                mask_secret(conn.password)
            url = InvoiceCloudHook._base_url(conn.host or "", conn.port, conn.schema)
            out[method] = CisEndpoint(url, conn.password or default.password)
        return out

    def _options(self) -> dict[str, Any]:
        extra = self.get_connection(self.cis_conn_id).extra_dejson or {}
        return {
            "timeout": float(self.timeout if self.timeout is not None else extra.get("timeout", 30)),
            "ca_file": extra.get("ca_file") or None,
            "verify": parse_bool(extra.get("verify"), True, "verify"),
            "pool_maxsize": int(self.pool_maxsize or extra.get("pool_maxsize", 10)),
            **transport_extras(extra),
        }

    def _build_client(self, endpoints: dict[str, CisEndpoint], options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def get_conn(self) -> Any:
        """Build (once per hook) the client."""
        if self._client is None:
            self._client = self._build_client(self.endpoints(), self._options())
        return self._client

    def _probe(self, client: Any) -> CisResult:
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated read for a non-existent account: "not found" means connected."""
        try:
            result = self._probe(self.get_conn())
        except Exception as exc:  # the UI wants a message, whatever went wrong
            return False, f"{type(exc).__name__}: {exc}"
        if result.ok or result.not_found:
            return True, f"Connected to {self.service_label} ({result.message or 'ok'})"
        return False, f"{self.service_label} refused the call: {result.message}"
