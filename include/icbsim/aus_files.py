"""Generator of AUS IC Daily Export files of any size, for the demo, tests and benchmarks.

Deterministic for a seed. Writes a valid file with a correct trailer; `mutate` lets tests
break single lines on purpose. Bills average 2.5 detail lines (~265 bytes a line), so
250,000 bills are about 625,000 lines and 165 MB, like a large utility's Initial Data Dump.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

HEADER = (
    "BID|AccountNumber|CustomerNumber|LocationNumber|BillNumber|BillDate|DueDate|CustomerName|"
    "MailAddress1|MailAddress2|MailCity|MailState|MailZip|Phone|Email|AmountDue|AmountDueAfterDueDate|"
    "DeferredBeginDate|DeferredEndDate|PaymentsReceived|DraftCustomer|PastDueAmount|AutoPayMessage|"
    "CashOnlyCC|CashOnlyACH|LineNumber|ServiceDescription|LineAmount|LinePreviousBalance|ServiceAddress|"
    "GroupCode|IncomeCenter|ParcelNumber|GroupPreviousBalance|MeterNumber|PrevReadDate|PrevReading|"
    "CurrReadDate|CurrReading|Usage|Estimated|ChangedOut"
)
COLUMNS = HEADER.split("|")
_FIRST = ["John", "Ana", "José", "Chloé", "Mary", "Sean", "Renée", "Li", "Omar", "Zoë"]
_LAST = ["Jones", "Björk", "García", "Nguyen", "Smith, Jr.", "Müller", "O'Brien", "Lee"]
_SERVICES = [("Water", "WA"), ("Sewer", "SW"), ("Electric", "EL"), ("Trash", "TR"), ("Storm Water", "ST")]

Row = dict[str, str]


def bill_rows(n: int, bid: str, rng: random.Random, meters: int = 1) -> list[Row]:
    """The detail lines of bill number n: 1-4 service lines (2.5 on average)."""
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    account = f"{100000 + n}-{rng.randint(0, 99):02d}"
    lines = rng.choice((1, 2, 3, 4))
    amounts = [Decimal(rng.randint(100, 30000)) / 100 for _ in range(lines)]
    amount_due = sum(amounts, Decimal(0))
    phone = rng.choice(("555.987.{:04d}", "(555) 123-{:04d}", "")).format(n % 10000)
    bill: Row = {
        "BID": bid,
        "AccountNumber": account,
        "CustomerNumber": str(100000 + n),
        "LocationNumber": account.split("-")[1],
        "BillNumber": f"B2026{n:07d}",
        "BillDate": f"{month:02d}/{day:02d}/2026",
        "DueDate": f"{month % 12 + 1:02d}/{day:02d}/{2026 + (month == 12)}",
        "CustomerName": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        "MailAddress1": f"{n} Main St",
        "MailAddress2": "",
        "MailCity": "Portsmouth",
        "MailState": "NH",
        "MailZip": rng.choice(("03801", "03801-1234", "038011234")),
        "Phone": phone,
        "Email": f"user{n}@example.com" if rng.random() < 0.8 else "",
        "AmountDue": f"{amount_due:.2f}",
        "AmountDueAfterDueDate": f"{amount_due + 5:.2f}",
        "DeferredBeginDate": "",
        "DeferredEndDate": "",
        "PaymentsReceived": f"{rng.randint(0, 9999) / 100:.2f}",
        "DraftCustomer": rng.choice("YN"),
        "PastDueAmount": "0.00",
        "AutoPayMessage": "",
        "CashOnlyCC": rng.choice("YN"),
        "CashOnlyACH": rng.choice("YN"),
    }
    rows = []
    for line_no, amount in enumerate(amounts, start=1):
        service, code = rng.choice(_SERVICES)
        for meter in range(meters):
            row = dict(bill)
            row.update(
                LineNumber=str(line_no),
                ServiceDescription=service,
                LineAmount=f"{amount:.2f}",
                LinePreviousBalance="",
                ServiceAddress=f"{n} Main St",
                GroupCode=code,
                IncomeCenter="IC1",
                ParcelNumber=f"P-{n}",
                GroupPreviousBalance="",
                MeterNumber=f"M{n}-{line_no}-{meter}",
                PrevReadDate=f"{month:02d}/01/2026",
                PrevReading=str(1000 + meter),
                CurrReadDate=f"{month:02d}/28/2026",
                CurrReading=str(1100 + meter),
                Usage="100",
                Estimated=rng.choice("YN"),
                ChangedOut="N",
            )
            rows.append(row)
    return rows


def format_file(rows: list[Row], encoding: str = "cp1252") -> bytes:
    """Header, the rows, and a correct trailer (counts and total of first-line AmountDue)."""
    return render(rows).encode(encoding)


def render(rows: list[Row], trailer: str | None = None, newline: str = "\r\n") -> str:
    body = [HEADER] + ["|".join(r.get(c, "") for c in COLUMNS) for r in rows]
    return newline.join([*body, trailer if trailer is not None else trailer_for(rows)]) + newline


def trailer_for(rows: list[Row]) -> str:
    seen: dict[tuple[str, str], str] = {}
    for r in rows:
        seen.setdefault((r["AccountNumber"], r["BillNumber"]), r["AmountDue"])
    total = sum((Decimal(v) for v in seen.values()), Decimal(0))
    return f"TRAILER|{len(rows)}|{len(seen)}|{total:.2f}"


def make_rows(bills: int, bid: str = "123", seed: int = 7, meters: int = 1) -> list[Row]:
    rng = random.Random(seed)
    rows: list[Row] = []
    for n in range(bills):
        rows.extend(bill_rows(n, bid, rng, meters))
    return rows


def warn_heavy(rows: list[Row], rng: random.Random) -> None:
    """Make one bill's rows as small utilities' data often are (benchmarks, issue 14): two
    bills in three carry a 7-digit local phone, one in three an email without a domain (both
    blanked and warned, as the spec says), one in a hundred an impossible BillDate (rejected)."""
    draw = rng.random()
    phone, email = f"555-{rng.randrange(10_000):04d}", f"user{rng.randrange(10**6)}@localhost"
    for row in rows:  # a bill's lines agree on its bill columns
        if draw < 2 / 3:
            row["Phone"] = phone
        if draw < 1 / 3 or draw > 0.99:
            row["Email"] = email
        if draw > 0.99:
            row["BillDate"] = "02/30/2026"


def write_file(
    path: Path,
    bills: int,
    bid: str = "123",
    seed: int = 7,
    mutate: Callable[[list[Row]], None] | None = None,
    per_bill: Callable[[list[Row], random.Random], None] | None = None,
) -> Path:
    """Write a file of `bills` bills; large sizes stream in chunks to keep memory flat.
    ``per_bill`` changes each bill's rows as they are made (e.g. :func:`warn_heavy`)."""
    if mutate is not None or (bills <= 20_000 and per_bill is None):
        rows = make_rows(bills, bid, seed)
        if mutate:
            mutate(rows)
        path.write_bytes(format_file(rows))
        return path
    odd = random.Random(seed + 1)
    rng = random.Random(seed)
    lines = bill_count = 0
    total = Decimal(0)
    with path.open("w", encoding="cp1252", newline="") as out:
        out.write(HEADER + "\r\n")
        for start in range(0, bills, 10_000):
            chunk: list[str] = []
            for n in range(start, min(bills, start + 10_000)):
                rows = bill_rows(n, bid, rng)
                if per_bill is not None:
                    per_bill(rows, odd)
                total += Decimal(rows[0]["AmountDue"])
                bill_count += 1
                lines += len(rows)
                chunk.extend("|".join(r[c] for c in COLUMNS) for r in rows)
            out.write("\r\n".join(chunk) + "\r\n")
        out.write(f"TRAILER|{lines}|{bill_count}|{total:.2f}\r\n")
    return path
