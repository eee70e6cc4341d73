"""Masking of account numbers and emails for logs (reports and artifacts keep them whole)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+)")


def mask_account(account: str | None) -> str:
    """Keep the last 4 characters: enough for ops to match, too little to identify."""
    if not account:
        return ""
    return "*" * max(len(account) - 4, 2) + account[-4:] if len(account) > 4 else "****"


def mask_email(email: str | None) -> str:
    if not email:
        return ""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", email)
