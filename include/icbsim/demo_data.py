"""Matching demo accounts in the CIS simulators and Invoice Cloud, for every CIS biller of a stack.

Why: the RTDR, Balance All, payment and change-log flows only show something when both
sides hold the same accounts with a few deliberate differences. :func:`demo_accounts` is
deterministic (seeded by the biller's BID), so tests and other flows can compute what to
expect; :func:`seed_demo` writes it into a running :class:`~icbsim.stack.SimStack`.

Per CIS biller (36 accounts, account numbers ``<bid>0001`` ...):
* every 5th account: the CIS balance is 10.00 lower than IC's (RTDR / Balance All correct it);
* every 4th account (inHance): FutureBalance = Balance + 25.00 (RTDR version 2);
* every 6th account: the CIS has another email than IC (only used with rtdr_updates_email);
* account 7 is cash-only in the CIS (AUS: blocks CC and ACH in IC, rule 7);
* the last account exists in IC only (missing in CIS: Balance All's ``missing_in_cis``);
* on the demo day IC lists payments (Web, IVR, CloudPay, one PayPal, one on a conveyed
  account ``...CV-<datetime>``) and changes (Paperless, AutoPay, Email, Phone);
* AUS: each account has a bill PDF for its invoice number.
Re-seeding the same day does not duplicate payments or changes.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icbsim.stack import SimStack

__all__ = ["ACCOUNTS_PER_BILLER", "CLOUDPAY_DAYS", "DemoAccount", "demo_accounts", "seed_bills_in_cis", "seed_demo"]

CLOUDPAY_DAYS = 7  # Logis billers: CloudPay payments on each of the last days, for the payment export

ACCOUNTS_PER_BILLER = 36
CASH_ONLY_INDEX = 7
CIS_BALANCE_GAP = Decimal("10.00")
FUTURE_GAP = Decimal("25.00")


@dataclass(frozen=True)
class DemoAccount:
    account_number: str
    invoice_number: str  # digits only (inHance LastInvoiceNumber is an integer)
    customer_name: str
    ic_balance: Decimal
    cis_balance: Decimal
    cis_future_balance: Decimal
    ic_email: str
    cis_email: str
    phone: str
    cash_only: bool
    in_cis: bool
    paperless: bool
    autopay: bool


def demo_accounts(bid: str, cis: str) -> list[DemoAccount]:
    """The deterministic demo accounts of one biller (see the module docstring)."""
    rng = random.Random(f"icbridge-demo-{bid}")
    names = ["Rivera", "Nguyen", "Okafor", "Smith", "Kowalski", "Haddad", "Larsen", "Moreau", "Tanaka"]
    out = []
    for i in range(1, ACCOUNTS_PER_BILLER + 1):
        ic_balance = Decimal(rng.randint(2_000, 40_000)) / 100
        cis_balance = ic_balance - CIS_BALANCE_GAP if i % 5 == 0 else ic_balance
        future = cis_balance + FUTURE_GAP if cis == "inhance" and i % 4 == 0 else cis_balance
        name = f"{names[i % len(names)]} {i:02d}"
        ic_email = f"customer{i:02d}@example.org"
        out.append(
            DemoAccount(
                account_number=f"{bid}{i:04d}",
                invoice_number=f"{bid}{7000 + i}",
                customer_name=name,
                ic_balance=ic_balance,
                cis_balance=cis_balance,
                cis_future_balance=future,
                ic_email=ic_email,
                cis_email=f"new.customer{i:02d}@example.org" if i % 6 == 0 else ic_email,
                phone=f"555-01{i:02d}",
                cash_only=i == CASH_ONLY_INDEX,
                in_cis=i != ACCOUNTS_PER_BILLER,
                paperless=i % 3 == 0,
                autopay=i % 8 == 0,
            )
        )
    return out


def _ic_activity(accounts: list[DemoAccount], day: date) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """(payments, changes) IC lists for the demo day."""
    start = datetime.combine(day, time(8, 0))
    payments = []
    kinds = [("CreditCard", "Web"), ("ACH", "Web"), ("CreditCard", "IVR"), ("ACH", "CloudPay"), ("PayPal", "Web")]
    for n, acct in enumerate(a for a in accounts[:10] if a.in_cis):
        payment_type, channel = kinds[n % len(kinds)]
        payments.append(
            {
                "account_number": acct.account_number,
                "invoice_number": acct.invoice_number,
                "payment_amount": min(acct.ic_balance, Decimal("50.00")),
                "payment_date": start + timedelta(minutes=37 * n),
                "convenience_fee": Decimal("1.95") if payment_type == "CreditCard" else Decimal(0),
                "payment_type": payment_type,
                "channel": channel,
                "cashier_name": "Front desk" if channel == "CloudPay" else "",
            }
        )
    conveyed = accounts[11]
    payments.append(
        dict(
            payments[0],
            account_number=f"{conveyed.account_number}CV-{day:%Y%m%d}093000",
            invoice_number=conveyed.invoice_number,
            payment_date=start + timedelta(hours=7),
        )
    )
    changes = [
        (accounts[2].account_number, "Paperless", "True"),
        (accounts[4].account_number, "AutoPay", "True"),
        (accounts[5].account_number, "Paperless", "False"),
        (accounts[8].account_number, "Email", "changed.customer09@example.org"),
        (accounts[9].account_number, "Phone", "555-0199"),
        (accounts[12].account_number, "AutoPay", "False"),
    ]
    return payments, changes


def seed_demo(stack: SimStack, day: date | None = None) -> dict[str, dict[str, int]]:
    """Seed every CIS biller of a started stack: CIS accounts (and AUS bills) plus IC's side.

    Returns biller_id -> counts. Safe to call again: accounts are replaced, the day's IC
    payments and changes are added once.
    """
    day = day or date.today()
    summary: dict[str, dict[str, int]] = {}
    for biller_id, access in sorted(stack.billers.items()):
        biller = access.biller
        if biller.payment_export is not None:
            summary[biller_id] = {"cloudpay_payments": _seed_cloudpay(stack, biller_id, day)}
        if biller.cis_service is None or biller.cis not in ("inhance", "aus"):
            continue
        sim = stack.inhance if biller.cis == "inhance" else stack.aus
        accounts = demo_accounts(biller.bid, biller.cis)
        guid = access.biller_guid
        for i, acct in enumerate(accounts, start=1):
            stack.ic.add_customer(
                guid,
                acct.account_number,
                customer_name=acct.customer_name,
                email_address=acct.ic_email,
                phone=acct.phone,
                paperless=acct.paperless,
                auto_pay=acct.autopay,
            )
            stack.ic.add_invoice(
                guid, acct.account_number, acct.invoice_number, acct.ic_balance, customer_name=acct.customer_name
            )
            if not acct.in_cis:
                continue
            sim.add_account(
                biller_id,
                acct.account_number,
                balance=acct.cis_balance,
                future_balance=acct.cis_future_balance,
                past_due=Decimal("12.00") if i % 9 == 0 else 0,
                email=acct.cis_email,
                phone=acct.phone,
                cash_only=acct.cash_only,
                paperless=acct.paperless,
                autopay=acct.autopay,
                customer_name=acct.customer_name,
                customer_number=f"C{acct.account_number}",
                location_number=f"L{i:05d}",
            )
            if biller.cis == "aus":
                stack.aus.add_bill(biller_id, acct.account_number, acct.invoice_number)
        payments, changes = _ic_activity(accounts, day)
        added = 0
        for n, payment in enumerate(payments):
            payment_guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"icbridge-demo/{biller_id}/{day}/{n}"))
            try:
                stack.ic.add_payment(guid, payment_guid=payment_guid, **payment)
            except sqlite3.IntegrityError:  # seeded before for this day: payments and changes are there
                break
            added += 1
        if added:
            for number, change_type, value in changes:
                stack.ic.add_change(guid, number, change_type, value, datetime.combine(day, time(10, 0)))
        summary[biller_id] = {
            "accounts": len(accounts),
            "in_cis": sum(a.in_cis for a in accounts),
            "payments": added,
            "changes": len(changes) if added else 0,
        }
    return summary


def _seed_cloudpay(stack: SimStack, biller_id: str, day: date) -> int:
    """A few CloudPay payments (taken at the biller's counter) on each of the last
    CLOUDPAY_DAYS days, so the Logis payment export has something to deliver. Deterministic
    PaymentGUIDs: seeding again adds nothing."""
    access = stack.access(biller_id)
    rng = random.Random(f"icbridge-demo-cloudpay-{access.biller.bid}")
    added = 0
    for back in range(CLOUDPAY_DAYS):
        when = day - timedelta(days=back)
        for n in range(1 + back % 3):
            number = rng.randint(1, 40)
            try:
                stack.ic.add_payment(
                    access.biller_guid, f"{access.biller.bid}{number:04d}", f"{access.biller.bid}{7000 + number}",
                    Decimal(rng.randint(1_000, 20_000)) / 100, datetime.combine(when, time(9 + 2 * n, 15)),
                    payment_type=["Cash", "Check", "CreditCard"][n % 3], channel="CloudPay", cashier_name="Counter 1",
                    payment_guid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"icbridge-demo/{biller_id}/cloudpay/{when}/{n}")),
                )
            except sqlite3.IntegrityError:  # seeded before
                continue
            added += 1
    return added


def seed_bills_in_cis(stack: SimStack, biller_id: str, rows: list[dict[str, str]]) -> int:
    """Make the CIS know the accounts of an AUS file the demo uploads (balance = the bill's
    AmountDue), so the AUS biller's Balance All compares them instead of reporting them
    missing. Returns the number of accounts."""
    sim = stack.aus if stack.access(biller_id).biller.cis == "aus" else stack.inhance
    seen: dict[str, tuple[str, str]] = {}
    for row in rows:
        seen.setdefault(row["AccountNumber"], (row["AmountDue"], row.get("BillNumber", "")))
    for account, (amount, bill) in seen.items():
        sim.add_account(biller_id, account, balance=Decimal(amount), customer_name=f"Demo {account}")
        if bill and hasattr(sim, "add_bill"):
            sim.add_bill(biller_id, account, bill)
    return len(seen)
