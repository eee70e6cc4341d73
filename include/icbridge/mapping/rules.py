"""The bill rules of the AUS -> BIF mapping, each declared once for both paths.

A rule has two forms side by side: ``check`` (the per-bill mapper: raises BadValue with the
reject's message) and ``flag`` (the column path: the bills of a whole range that may break
it, found in a few C loops). A flagged bill goes to the per-bill mapper, whose ``check``
decides and words the reject, so both paths reject the same bills with the same messages
(tests/unit/mapping/test_rules.py generates one equivalence case per rule).

The rules, in the order the per-bill mapper checks them (the first broken one is the
reject's reason); value rules (dates, amounts, flags...) are the converters of values.py,
shared by both paths; the meter rules (multiple_meters, at most 25) are the per-bill
mapper's alone, since a bill with meters never stays on the column path (LineNumbers).
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_, ge, gt, lt, not_
from typing import Protocol

from icbridge.mapping.tables import Table
from icbridge.mapping.values import BadValue
from icbridge.mapping.values import is_digits as _is_digits


class Named(Protocol):
    """A source column as the rules need it (plan.SourceColumn)."""

    name: str
    src: int


@dataclass
class Batch:
    """A range's bills as the column path sees them: ``table`` (its lines' fields), each
    bill's first line (``starts``, ascending), ``follows`` (1 for a line that is not its
    bill's first), each line's LineNumber as an int (0 where it is not digits) and
    ``bill_column(src)`` (a column's values on each bill's first line)."""

    table: Table
    starts: list[int]
    follows: bytearray
    numbers: list[int]
    bill_column: Callable[[int], Sequence[str]]

    def bills_of(self, lines: Iterable[int]) -> Iterable[int]:
        """The bill of each of these lines."""
        starts = self.starts
        return (bisect_right(starts, line) - 1 for line in lines)

    def bills_where(self, flags: Iterable[bool | int]) -> Iterable[int]:
        """The bills whose flag (one per bill) is truthy."""
        return compress(range(len(self.starts)), flags)


class FieldCount:
    """Every line of a bill has the header's number of fields."""

    name = "field count"

    def __init__(self, n_fields: int) -> None:
        self.n_fields = n_fields

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        for fields, line_no in zip(rows, line_nos, strict=True):
            if len(fields) != self.n_fields:
                raise BadValue(f"line {line_no} has {len(fields)} fields, the header has {self.n_fields}")

    def flag(self, batch: Batch) -> Iterable[int]:
        """None: a range's Table exists only when every line has the header's count
        (tables.make_table); otherwise every bill of the range goes to the per-bill mapper."""
        return ()


class BillColumnsAgree:
    """Every line of a bill repeats its first line's bill-level values."""

    name = "bill columns agree"

    def __init__(self, bill_cols: Sequence[Named], bill_key: Callable[[list[str]], object]) -> None:
        self.bill_cols, self.bill_key = bill_cols, bill_key
        self.sources = sorted({c.src for c in bill_cols})

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        first = rows[0]
        key0 = self.bill_key(first)
        for fields, line_no in zip(rows[1:], line_nos[1:], strict=False):
            if self.bill_key(fields) != key0:
                cols = [c.name for c in self.bill_cols if fields[c.src] != first[c.src]]
                raise BadValue(f"line {line_no} disagrees with line {line_nos[0]} on {', '.join(cols)}")

    def flag(self, batch: Batch) -> Iterable[int]:
        changed = map(and_, batch.table.changes(self.sources), batch.follows[1:])
        return batch.bills_of(compress(range(1, batch.table.rows), changed))


class RequiredValues:
    """A bill has a value in every required bill-level column (aus_columns.csv)."""

    name = "required values"

    def __init__(self, required: Sequence[Named]) -> None:
        self.required = required
        self.getter = operator.itemgetter(*[c.src for c in required])

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        first = rows[0]
        if not all(self.getter(first)):
            missing = [c.name for c in self.required if not first[c.src]]
            raise BadValue(f"missing required value {', '.join(missing)}")

    def flag(self, batch: Batch) -> Iterable[int]:
        flagged: list[int] = []
        for col in self.required:
            if not all(values := batch.bill_column(col.src)):  # one C loop: usually none missing
                flagged.extend(batch.bills_where(map(not_, values)))
        return flagged


class BillLengths:
    """A bill-level text value fits its BIF field (bif_lengths.csv)."""

    name = "bill value length"

    def __init__(self, limits: Sequence[tuple[Named, int]]) -> None:
        self.limits = limits

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        first = rows[0]
        for col, limit in self.limits:
            if len(first[col.src]) > limit:
                raise BadValue(f"{col.name} is {len(first[col.src])} characters long; its BIF field takes {limit}")

    def flag(self, batch: Batch) -> Iterable[int]:
        flagged: list[int] = []
        for col, limit in self.limits:
            if max(map(len, values := batch.bill_column(col.src))) > limit:
                flagged.extend(batch.bills_where(map(gt, map(len, values), repeat(limit))))
        return flagged


class LineLengths:
    """A line-level text value fits its BIF field (bif_lengths.csv)."""

    name = "line value length"

    def __init__(self, limits: Sequence[tuple[Named, int]]) -> None:
        self.limits = limits

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        for col, limit in self.limits:
            for fields, line_no in zip(rows, line_nos, strict=True):
                if len(fields[col.src]) > limit:
                    raise BadValue(f"line {line_no}: {col.name} is {len(fields[col.src])} characters long; its BIF "
                                   f"field takes {limit}")

    def flag(self, batch: Batch) -> Iterable[int]:
        flagged: list[int] = []
        table = batch.table
        for col, limit in self.limits:
            if max(map(len, values := table.column(col.src))) > limit:
                flagged.extend(batch.bills_of(compress(range(table.rows), map(gt, map(len, values), repeat(limit)))))
        return flagged


class LineNumbers:
    """A bill's LineNumbers are integers >= 1, one line per (LineNumber, MeterNumber); its ID
    rows are written in LineNumber order (lines that share one are its meters). Checked after
    the bill-level values convert (a bill value's reject comes first)."""

    name = "line numbers"

    def __init__(self, line_i: int, meter_i: int | None) -> None:
        self.line_i, self.meter_i = line_i, meter_i

    @staticmethod
    def ordered(numbers: list[str]) -> bool:
        """Whether these LineNumbers are valid and strictly ascending (so distinct, in order):
        the common case, whose rows need neither checking nor sorting."""
        if not all(map(_is_digits, numbers)):
            return False
        if len(numbers) == 1:
            return numbers[0] != "0" * len(numbers[0])
        values = list(map(int, numbers))
        return values[0] >= 1 and all(map(operator.lt, values, values[1:]))

    def check(self, rows: list[list[str]], line_nos: list[int]) -> None:
        seen: set[tuple[str, str]] = set()
        for fields, line_no in zip(rows, line_nos, strict=True):
            number = fields[self.line_i]
            if not _is_digits(number) or int(number) < 1:
                raise BadValue(f"line {line_no}: LineNumber {number!r} is not an integer >= 1")
            meter = fields[self.meter_i] if self.meter_i is not None else ""
            if (number, meter) in seen:
                raise BadValue(f"line {line_no}: duplicate line (LineNumber {number}, MeterNumber {meter!r})")
            seen.add((number, meter))

    def flag(self, batch: Batch) -> Iterable[int]:
        """Bills whose LineNumbers do not ascend from 1 or more (to be checked, sorted or
        packed as meters by the per-bill mapper)."""
        numbers = batch.numbers
        falling = map(and_, map(ge, numbers, numbers[1:]), batch.follows[1:])
        flagged = set(batch.bills_of(compress(range(1, batch.table.rows), falling)))
        flagged.update(batch.bills_where(map(lt, map(numbers.__getitem__, batch.starts), repeat(1))))
        return flagged


BillRule = FieldCount | BillColumnsAgree | RequiredValues | BillLengths | LineLengths | LineNumbers
RULES: tuple[type[BillRule], ...] = (
    FieldCount, BillColumnsAgree, RequiredValues, BillLengths, LineLengths, LineNumbers,
)
"""Every bill rule, in the per-bill mapper's order."""
