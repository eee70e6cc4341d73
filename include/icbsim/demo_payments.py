"""CloudPay payments in the IC simulator for the demo's Logis billers (payment export).

Why separate from demo_data.seed_demo: that one seeds CIS accounts for billers with a
``cis_service``; Logis billers have none, only IC-side CloudPay payments, which the
``<biller>__payment_export`` DAG turns into the daily file. Deterministic (GUIDs are
uuid5 of biller, day and index), so seeding again adds nothing twice.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from icbridge.layouts.logis import closure

if TYPE_CHECKING:
    from icbsim.stack import SimStack

__all__ = ["seed_logis_payments"]

_NAMESPACE = uuid.UUID("6f1c1b0e-3d5a-4c8e-9b7a-2a4d5e6f7081")
_TYPES = ("CreditCard", "Cash", "Check", "ACH", "PayPal", "eCheck")
_CASHIERS = ("Front desk", "M. Ortiz", "Phone - J. Lee", "O'Brien, Pat")


def seed_logis_payments(stack: SimStack, days: int = 3, today: date | None = None) -> dict[str, int]:
    """Seed the last ``days`` business days (closed ones) of every Logis biller with a
    payment_export section; returns biller_id -> payments added now. One payment a day
    sits on the closure minute itself (inclusive end), one is on a conveyed account."""
    added: dict[str, int] = {}
    for biller_id, access in sorted(stack.billers.items()):
        biller = access.biller
        if biller.cis != "logis" or biller.payment_export is None:
            continue
        tz = biller.tz
        last = (today or datetime.now(tz).date()) - timedelta(days=1)
        count = 0
        for offset in range(days):
            day = last - timedelta(days=offset)
            rng = random.Random(f"{biller.bid}-{day}")
            for i in range(rng.randint(4, 9)):
                guid = str(uuid.uuid5(_NAMESPACE, f"{biller.biller_id}/{day}/{i}")).upper()
                if i == 0:
                    when = closure(day, tz)  # exactly 23:59: still this day (inclusive end)
                else:
                    when = datetime.combine(day, time(8 + rng.randint(0, 9), rng.randint(0, 59)), tzinfo=tz)
                account = f"{biller.bid}{rng.randint(1, 36):04d}"
                if i == 1:
                    account += "-CV-202601150930"  # a conveyed account (rule 4 drops the suffix)
                try:
                    stack.ic.add_payment(
                        access.biller_guid,
                        account,
                        f"{rng.randint(100000, 999999)}" if rng.random() < 0.7 else "",
                        f"{rng.randint(1500, 35000) / 100:.2f}",
                        when,
                        convenience_fee="2.95" if i % 3 == 0 else "0.00",
                        payment_type=_TYPES[i % len(_TYPES)],
                        channel="CloudPay",
                        cashier_name=_CASHIERS[i % len(_CASHIERS)],
                        payment_guid=guid,
                    )
                except sqlite3.IntegrityError:  # seeded before (same GUID)
                    continue
                count += 1
        added[biller_id] = count
    return added

