"""Account-number rules shared by every flow that sends IC accounts back to a CIS.

Rule 4 of shared/specs/web-services.md: an IC account number that ends in a conveyance
suffix ``CV-`` + a 12-14 digit date-time (optionally after ``-`` or a space) is sent to the
CIS as the part before the suffix ("drop the CV-DATTIME"). Used by the Logis payment export
and the payments data pump alike: one rule, one function.
"""

from __future__ import annotations

import re

__all__ = ["CONVEYANCE_SUFFIX", "drop_conveyance_suffix"]

# "CV-" exactly as the seed writes it (upper case), 12 to 14 digits, at the very end.
CONVEYANCE_SUFFIX = re.compile(r"[- ]?CV-\d{12,14}$")


def drop_conveyance_suffix(account_number: str) -> str:
    """``"100234-CV-202603081530"`` -> ``"100234"``; numbers without the suffix are unchanged.

    Raises ValueError when nothing would be left (the suffix is the whole number): sending
    an empty account to the CIS would post the payment nowhere.
    """
    stripped = CONVEYANCE_SUFFIX.sub("", account_number)
    if stripped == account_number:
        return account_number
    if not stripped.strip():
        raise ValueError(f"account number {account_number!r} is only a conveyance suffix (rule 4)")
    return stripped
