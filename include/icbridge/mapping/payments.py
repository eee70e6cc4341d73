"""Payment rules shared by every flow that posts an IC payment to a CIS (no Airflow).

Rule 5 of shared/specs/web-services.md (INT-7012): an IC payment of type PayPal is sent to
inHance with PaymentTypeDesc "Credit Card", unless the biller's advanced setting 116
(``cis_service.paypal_payment_type``) names another value. Other types pass unchanged: the
CIS, not this project, knows its own list of payment type descriptions.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_PAYPAL_PAYMENT_TYPE", "cis_payment_type"]

DEFAULT_PAYPAL_PAYMENT_TYPE = "Credit Card"


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def cis_payment_type(ic_payment_type: str, paypal_payment_type: str = DEFAULT_PAYPAL_PAYMENT_TYPE) -> str:
    """``"PayPal"`` (any case/spacing) -> ``paypal_payment_type``; any other type unchanged (stripped).

    ValueError for an empty type: a payment must not be posted with no type at all.
    """
    text = (ic_payment_type or "").strip()
    if not text:
        raise ValueError("payment type is empty")
    return paypal_payment_type if _letters(text) == "paypal" else text
