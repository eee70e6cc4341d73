"""The operators of every Harris CIS method, one module per vendor (operators/inhance.py,
operators/aus.py), gathered here for DAG authors: ``from icbridge.operators.cis import ...``.
Catalogue: docs/operators.md.
"""

from __future__ import annotations

from icbridge.operators.aus import (
    AusAddPendingPaymentOperator,
    AusGetAccountDataOperator,
    AusRetrieveBillPrintImageOperator,
    AusUpdateEBillRegistrationOperator,
    AusUpdatePaymentPlanOperator,
    NotAPdf,
    looks_like_pdf,
)
from icbridge.operators.inhance import (
    InhanceBalanceCheckOperator,
    InhanceMakePaymentExtendedOperator,
    InhanceSetAutopayOperator,
    InhanceSetEmailOperator,
    InhanceSetPaperlessOperator,
)

__all__ = [
    "AusAddPendingPaymentOperator",
    "AusGetAccountDataOperator",
    "AusRetrieveBillPrintImageOperator",
    "AusUpdateEBillRegistrationOperator",
    "AusUpdatePaymentPlanOperator",
    "InhanceBalanceCheckOperator",
    "InhanceMakePaymentExtendedOperator",
    "InhanceSetAutopayOperator",
    "InhanceSetEmailOperator",
    "InhanceSetPaperlessOperator",
    "NotAPdf",
    "looks_like_pdf",
]
