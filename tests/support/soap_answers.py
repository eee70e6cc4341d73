"""Raw SOAP answers a test scripts into the hostile HTTP server, and the one payment call the
money tests make."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from icbridge.soap.inhance import InhanceClient
from tests.support.hostile_http import answer, envelope

TEMPURI = "http://tempuri.org/"
IC_PAY = "https://www.invoicecloud.com/portal/webservices/CloudPayments/"


def method_answer(method: str, fields: str) -> bytes:
    """``<method>Response``/``<method>Result`` holding ``fields``, 200 OK."""
    return answer("200 OK", envelope(f'<{method}Response xmlns="{TEMPURI}"><{method}Result>{fields}'
                                     f"</{method}Result></{method}Response>"))


def make_payment(client: InhanceClient) -> Any:
    """MakePaymentExtended for account 1001 (ACH, 10.00)."""
    return client.make_payment_extended("1001", datetime(2026, 3, 2, 10, tzinfo=UTC), "g", "7", "ACH", "10.00")
