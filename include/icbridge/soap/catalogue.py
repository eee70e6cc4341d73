"""Every SOAP operation icbridge calls, with its WSDL: the source of the answer-contract
table in docs/cis-services.md (``contract_table()``; tests/integration/soap/test_soap_hostile.py keeps the
document equal to it). No Airflow imports."""

from __future__ import annotations

from pathlib import Path

from icbridge.soap import aus, inhance
from icbridge.soap.contract import contract_markdown
from icbridge.soap.invoice_cloud import WSDL_DIR

__all__ = ["OPERATIONS", "contract_table"]

_IC = (
    ("CloudInvoicing", "UploadInvoiceFile"), ("CloudInvoicing", "ViewInvoiceByInvoiceNumber"),
    ("CloudInvoicing", "ListOpenInvoices"), ("CloudInvoicing", "UpdateInvoiceBalance"),
    ("CloudManagement", "ViewCustomerRecord"), ("CloudManagement", "UpdateCustomerRecord"),
    ("CloudManagement", "ListChangeLog"), ("CloudPayments", "ListPayments"),
)
OPERATIONS: list[tuple[str, str | Path, str]] = [
    *[("invoice_cloud", WSDL_DIR / f"{service}.wsdl", operation) for service, operation in _IC],
    *[("inhance", inhance.WSDL, method) for method in inhance.METHODS],
    *[("aus", aus.WSDL, method) for method in aus.METHODS],
]


def contract_table() -> str:
    """The Markdown table of every operation's answer contract."""
    return contract_markdown(OPERATIONS)
