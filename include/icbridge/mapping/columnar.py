"""Column-at-a-time mapping of a byte range's bills: the common shape of a bill in C loops.

The per-bill mapper (bills.BillMapper.map_bill) applies every rule one bill at a time
in Python, about 40 µs a bill. Most bills need none of its special cases: their lines have
the header's field count and agree on the bill columns, their LineNumbers ascend (one meter
a line), and every value is one its converter accepts without a warning. Such bills are
mapped here a column at a time over a whole range: the range's fields are one flat list
(a column is a slice of it), a column of values already in BIF form is proven by one regex,
any other converted column goes through a memo of its converter, and each BIF row type is
one %-format over the zipped columns. A bill that needs anything else (a reject, a warning,
sorting, meter packing) is handed back as None and goes through map_bill, so the bytes,
rejects and warnings are those of the per-bill path (tested).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import accumulate, chain, compress, repeat
from operator import is_, ne

from icbridge.layouts.bif import encode_field, tuple_getter
from icbridge.layouts.re2_adapter import Utf8Matcher, as_re2
from icbridge.mapping.plan import Plan, RowTemplate, SourceColumn
from icbridge.mapping.rules import Batch
from icbridge.mapping.tables import Table
from icbridge.mapping.values import NEVER_QUOTED, UNCHANGED, is_digits

SEP = "\x1f"  # joins a column's values for one regex over all of them
_BAD = "\x00bad"  # a value map_bill would reject
_WARN = "\x00warn"  # a soft value map_bill would blank (and, for a bill column, warn about)
_QUOTE = re.compile('[,"]')  # as the per-bill path: a value with these is written quoted
# a whole value (of a column joined by SEP) with , or " in it; (?<!...) fails at once inside a value
_QUOTED_VALUE = re.compile('(?<![^\x1f])[^\x1f,"]*+[,"][^\x1f]*+')


def column_pattern(pattern: str) -> re.Pattern[str] | Utf8Matcher:
    """A pattern for a column's values joined by SEP (one fullmatch over a whole column),
    compiled by RE2 where it reads the pattern as Python does (~2-4x faster on a column; see
    bif.as_re2), else by Python's re (a pattern with a Unicode class: \\s, \\d, ...)."""
    try:
        return as_re2(pattern, for_bytes=False)
    except ValueError:
        return re.compile(pattern)


_LINE_NUMBERS = column_pattern(r"[0-9]+(?:\x1f[0-9]+)*+")
_AMOUNTS = column_pattern(f"(?:{UNCHANGED['money']})(?:\x1f(?:{UNCHANGED['money']}))*+")


class _Memo(dict):
    """A column's converted values by raw value, for one range (a dict lookup per value from
    C; the column's own memo, _Col.value, behind it); _BAD where the converter rejects the
    value, _WARN where it blanks it."""

    def __init__(self, convert: Callable[[str], str | None]) -> None:
        super().__init__({"": ""})  # a blank stays blank, as in map_bill
        self.convert = convert

    def __missing__(self, raw: str) -> str:
        try:
            value = self.convert(raw)
        except ValueError:  # BadValue, or a digit int() does not take
            value = _BAD
        self[raw] = value = _WARN if value is None else value
        return value


class ConvertedColumn:
    """One converted source column."""

    def __init__(self, col: SourceColumn) -> None:
        self.src = col.src
        self.name = col.name
        self.convert = col.value
        one = UNCHANGED.get(col.type)
        self.unchanged = column_pattern(f"(?:{one})?(?:\x1f(?:{one})?)*+") if one else None

    def apply(self, values: Sequence[str]) -> tuple[Sequence[str], bool, bool]:
        """The column's BIF values, whether any is _BAD, whether any is _WARN."""
        if self.unchanged is not None and self.unchanged.fullmatch(SEP.join(values)):
            return values, False, False
        memo = _Memo(self.convert)
        values = list(map(memo.__getitem__, values))
        found = set(memo.values())
        return values, _BAD in found, _WARN in found


class ColumnarPlan:
    """What the column path needs of a file's plan, worked out once per file."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.bill_columns = [ConvertedColumn(c) for c in plan.bill_conv.all]
        self.line_columns = [ConvertedColumn(c) for c in plan.id_conv.all]
        # converted columns whose values a BIF line never quotes
        self.unquoted = {c.src for c in plan.bill_conv.all + plan.id_conv.all if c.type in NEVER_QUOTED}
        self.bill_sources = sorted({c.src for c in plan.bill_cols})
        # the fields a bill's lines repeat, when they all come before every line field (the
        # AUS layout's order): a BlockTable then cuts each line once (None: a plain Table)
        bill_level = [plan.bid_i, plan.acct_i, plan.bill_i, plan.amount_i, *self.bill_sources]
        line_level = [plan.line_i, *(c.src for c in plan.line_cols + plan.meter_cols)]
        self.prefix = max(bill_level) + 1 if min(line_level) > max(bill_level) else None

    def group(self, table: Table, bid: str) -> tuple[list[range], list[tuple[str, str]], Decimal] | None:
        """Each bill's lines, key and the sum of the first AmountDues, as _group_lines finds
        them, for a range whose every bill's lines are together, every line has this
        biller's BID and every first AmountDue is already in BIF form; None for any other
        range (_group_lines then groups it, or raises). The table must come from lines
        without TAB or CR (whose _split is then only trimming, as _group_lines's)."""
        plan, n = self.plan, table.rows
        if not n or set(table.column(plan.bid_i)) != {bid}:
            return None
        accounts, numbers = table.column(plan.acct_i), table.column(plan.bill_i)
        if accounts != list(map(str.strip, accounts)) or numbers != list(map(str.strip, numbers)):
            return None  # _group_lines strips the key; _split trims only around ASCII blanks
        keys = list(zip(accounts, numbers, strict=True))
        starts = [0, *compress(range(1, n), map(ne, keys[1:], keys))]
        first_keys = list(map(keys.__getitem__, starts))
        if len(set(first_keys)) != len(starts):  # a bill's lines are not together
            return None
        amounts = tuple_getter(starts)(table.column(plan.amount_i))
        if not _AMOUNTS.fullmatch(SEP.join(amounts)):
            return None
        return list(map(range, starts, [*starts[1:], n])), first_keys, sum(map(Decimal, amounts), Decimal(0))

    def map_bills(
        self, table: Table, bills: Sequence[Sequence[int]]
    ) -> tuple[list[str | None], list[str | None], dict[int, set[int]]]:
        """Each bill's BIF text (IH, CR and ID lines) and TotalAmountDue; None for a bill
        that map_bill must take; and per bill mapped here that blanked a soft value, the
        source columns it blanked (the caller warns as map_bill does). Bills must be the
        table's lines in order, each one's lines together (as group gives them); otherwise
        every bill is left to map_bill."""
        plan = self.plan
        none: list[str | None] = [None] * len(bills)
        if not bills or not _in_order(bills, table.rows):
            return none, none.copy(), {}
        line_numbers = table.column(plan.line_i)
        if _LINE_NUMBERS.fullmatch(SEP.join(line_numbers)):
            numbers = list(map(int, line_numbers))
        else:  # a LineNumber that is not digits: as 0, which flags its bill (rules.LineNumbers)
            numbers = [int(n) if is_digits(n) else 0 for n in line_numbers]
        sizes = list(map(len, bills))
        starts = [0, *accumulate(sizes)][:-1]  # each bill's first line
        firsts = tuple_getter(starts)
        follows = bytearray([1]) * table.rows  # the line is not its bill's first
        for start in starts:
            follows[start] = 0
        first_values: dict[int, tuple[str, ...]] = {}

        def bill_column(src: int) -> tuple[str, ...]:
            """A column's values on each bill's first line."""
            if src not in first_values:
                first_values[src] = table.at_lines(src, starts, firsts)
            return first_values[src]

        batch = Batch(table, starts, follows, numbers, bill_column)
        bad: set[int] = set()
        for rule in (*plan.rules, plan.line_order):  # each asks a few C loops which bills may break it
            bad.update(rule.flag(batch))
        bill_values, blanked = self._convert(self.bill_columns, bill_column, bad, None)
        line_values, _ = self._convert(self.line_columns, table.column, bad, starts)  # blanked silently
        heads = map(
            str.__add__,
            _render(plan.ih_row, bill_values, bill_column, len(bills), self.unquoted),
            _render(plan.cr_row, bill_values, bill_column, len(bills), self.unquoted),
        )
        ids = _render(plan.id_row, line_values, table.column, table.rows, self.unquoted)
        texts: list[str | None] = [
            head + "".join(ids[start : start + size]) for head, start, size in zip(heads, starts, sizes, strict=True)
        ]
        amounts: list[str | None] = list(bill_values[plan.total_src])
        for b in bad:
            texts[b] = amounts[b] = None
        for b in bad.intersection(blanked):
            del blanked[b]
        return texts, amounts, blanked

    @staticmethod
    def _convert(
        columns: list[ConvertedColumn], column: Callable[[int], Sequence[str]], bad: set[int], starts: list[int] | None
    ) -> tuple[dict[int, Sequence[str]], dict[int, set[int]]]:
        """The converted columns by source position, a _WARN value blanked; bills with a
        _BAD value join `bad` (`starts`: each bill's first line, when the values are lines
        rather than bills); and per value index, the source columns it blanked."""
        converted = {}
        blanked: dict[int, set[int]] = {}
        for col in columns:
            values, any_bad, any_warn = col.apply(column(col.src))
            if any_bad:
                for i in compress(range(len(values)), map(is_, values, repeat(_BAD))):
                    bad.add(i if starts is None else bisect_right(starts, i) - 1)
            if any_warn:
                values = list(values)
                for i in compress(range(len(values)), map(is_, values, repeat(_WARN))):
                    values[i] = ""
                    blanked.setdefault(i, set()).add(col.src)
            converted[col.src] = values
        return converted, blanked


def _in_order(bills: Sequence[Sequence[int]], rows: int) -> bool:
    """Whether the bills are lines 0..rows-1 in order (each bill's lines together)."""
    return list(chain.from_iterable(bills)) == list(range(rows))


def quote_column(values: Sequence[str]) -> list[str]:
    """These values as encode_field writes each, in one regex pass over them joined."""
    return _QUOTED_VALUE.sub(_quoted, SEP.join(values)).split(SEP)


def _quoted(value: re.Match[str]) -> str:
    """A matched value as encode_field writes it (the column path's values hold no CR/LF)."""
    return encode_field(value.group())


def _render(
    template: RowTemplate,
    converted: dict[int, Sequence[str]],
    column: Callable[[int], Sequence[str]],
    n: int,
    unquoted: set[int],
) -> list[str]:
    """One BIF line of this row type per row: the template over the zipped columns, each
    column's values quoted (RFC 4180) when one of them needs it (`unquoted`: the converted
    columns whose values never need it)."""
    columns = []
    for src in template.picks:
        values = converted.get(src)
        if values is None:
            values = column(src)
        elif src in unquoted:
            columns.append(values)
            continue
        if _QUOTE.search(SEP.join(values)):  # quote the values that need it, as encode_field, in one pass
            values = quote_column(values)
        columns.append(values)
    if not columns:
        return [template.format] * n
    return list(map(template.format.__mod__, zip(*columns, strict=True)))
