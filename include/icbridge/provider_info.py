"""Provider metadata, so Airflow lists icbridge's connection types in the Connections UI."""

from __future__ import annotations

from icbridge import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "icbridge",
        "name": "icbridge",
        "description": "Invoice Cloud <-> Harris CIS integration hooks (Invoice Cloud SOAP, FTPS).",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "invoice_cloud",
                "hook-class-name": "icbridge.hooks.invoice_cloud.InvoiceCloudHook",
            },
            {
                "connection-type": "icb_ftps",
                "hook-class-name": "icbridge.hooks.ftps.IcbFTPSHook",
            },
            {
                "connection-type": "inhance",
                "hook-class-name": "icbridge.hooks.inhance.InhanceHook",
            },
            {
                "connection-type": "aus_cis",
                "hook-class-name": "icbridge.hooks.aus.AusHook",
            },
        ],
    }
