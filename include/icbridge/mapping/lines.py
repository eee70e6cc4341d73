"""The line path: the whole file read, every line grouped into its bill, the trailer
checked, then the bills mapped in chunks by the per-bill mapper. The general way, and the
one that raises every file-level rejection (a range path that meets one gives up to it).
Also the grouping both paths share (group_lines).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from icbridge.layouts.aus import FileRejected, IncompleteFile, read_aus
from icbridge.mapping.bills import BillMapper, map_bills
from icbridge.mapping.plan import Plan
from icbridge.mapping.types import Chunk, InvoiceSettings, Reject
from icbridge.mapping.values import parse_money
from icbridge.mapping.workers import run, share, shared

PARALLEL_MIN_BILLS = 20_000
CHUNK_BILLS = 25_000  # bills per task


@dataclass
class Mapped:
    """A file mapped by the line path but not yet written: what the parts are made of."""

    mapper: BillMapper
    bills: int
    orphans: list[Reject]  # short lines that name no bill: rejected first, as lines
    chunks: list[Chunk]
    workers: int


def map_lines(data: bytes, name: str, settings: InvoiceSettings, workers: int | None) -> Mapped:
    """The general path: decode and split the whole file, group every line into its bill,
    check the trailer, then map the bills in chunks. Raises every file-level rejection."""
    af = read_aus(data, name, settings.column_aliases)
    expected_lines, expected_bills, expected_total = af.trailer
    trailer_line = af.line_numbers[-1] + 1 if af.line_numbers else 2
    if expected_lines != len(af.lines):
        raise IncompleteFile(
            name, "trailer", f"trailer says {expected_lines} detail lines, file has {len(af.lines)}", trailer_line
        )
    mapper = BillMapper(af, settings)
    groups, orphans, total = group_lines(
        key_fields(af.lines, mapper.plan), af.line_numbers, mapper.plan, settings.bid, name
    )
    bills = len(groups) + len(orphans)
    if workers is None:
        workers = (os.cpu_count() or 1) if len(groups) >= PARALLEL_MIN_BILLS else 1
    if expected_bills != bills:
        raise IncompleteFile(name, "trailer", f"trailer says {expected_bills} bills, file has {bills}", trailer_line)
    if expected_total != total:
        raise IncompleteFile(
            name, "trailer", f"trailer total {expected_total:.2f} but the bills add up to {total:.2f}", trailer_line
        )
    members = list(groups.values())
    tasks = [(i, min(i + CHUNK_BILLS, len(members))) for i in range(0, len(members), CHUNK_BILLS)]
    share((mapper, members))
    try:
        chunks = run(map_chunk, tasks, workers)
    finally:
        share(None)
    return Mapped(mapper, bills, orphans, chunks, workers)


def key_fields(lines: list[str], plan: Plan) -> Iterable[list[str]]:
    """Each line split up to the fields that tell its bill and its AmountDue (not trimmed)."""
    return map(operator.methodcaller("split", "|", max(plan.acct_i, plan.bill_i, plan.bid_i, plan.amount_i) + 1), lines)


def group_lines(
    split_lines: Iterable[list[str]], numbers: Sequence[int], plan: Plan, bid: str, name: str
) -> tuple[dict[tuple[str, str], list[int]], list[Reject], Decimal]:
    """Each bill's lines (indexes) in order of first appearance, the short lines that name
    no bill, and the sum of each bill's first AmountDue (for the trailer). Raises
    FileRejected for another biller's BID or a first AmountDue that does not parse.
    `split_lines`: each line's fields, from _key_fields, or from split_line where no field holds
    a TAB or CR (its trimming is then a part of the .strip() below, so the keys agree)."""
    key_min = max(plan.acct_i, plan.bill_i, plan.bid_i) + 1  # fields needed to tell a line's bill
    groups: dict[tuple[str, str], list[int]] = {}
    total = Decimal(0)
    orphans: list[Reject] = []
    acct_i, bill_i, bid_i, amount_i = plan.acct_i, plan.bill_i, plan.bid_i, plan.amount_i
    for i, fields in enumerate(split_lines):
        if len(fields) < key_min:  # a short line that still names its bill joins it (and rejects it)
            orphans.append(
                Reject([numbers[i]], "", "", f"line has {len(fields)} fields, the header has {plan.n_fields}")
            )
            continue
        line_bid = fields[bid_i]
        if line_bid != bid and line_bid.strip() != bid:
            raise FileRejected(name, "BID", f"BID {line_bid!r} is not this biller's BID {bid}", numbers[i])
        key = (fields[acct_i].strip(), fields[bill_i].strip())
        members = groups.get(key)
        if members is None:
            groups[key] = [i]
            raw_amount = fields[amount_i] if amount_i < len(fields) else None
            amount = parse_money(raw_amount.strip()) if raw_amount is not None else None
            if amount is None:
                what = f"AmountDue {raw_amount!r} does not parse" if raw_amount is not None else "AmountDue is missing"
                raise FileRejected(name, "trailer", f"{what}, so the trailer total cannot be checked", numbers[i])
            total += Decimal(amount)
        else:
            members.append(i)
    return groups, orphans, total


def map_chunk(bounds: tuple[int, int]) -> Chunk:
    """Line path task: map bills [start, stop) of the file."""
    mapper, members = shared()
    af = mapper.af
    return map_bills(mapper, af.lines, af.line_numbers, members[bounds[0] : bounds[1]])
