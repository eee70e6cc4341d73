"""The per-bill mapper (every rule, one bill at a time) and map_bills, the one entry both
paths use to map a task's bills: a column at a time where it can (columnar), the rest by the
per-bill mapper, the same bytes, rejects and warnings either way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from itertools import accumulate, chain

from icbridge.layouts.aus import AusFile
from icbridge.layouts.bif import encode_row
from icbridge.layouts.bif_proof import invoice_totals
from icbridge.mapping.columnar import ColumnarPlan
from icbridge.mapping.plan import Plan, SourceColumn
from icbridge.mapping.tables import Table, split_line
from icbridge.mapping.types import MAX_METERS, MAX_WARNINGS_KEPT, METERS_PER_FIELD, Chunk, InvoiceSettings, Reject
from icbridge.mapping.values import BadValue

_NEEDS_QUOTING = re.compile('[,"]')  # a source line with these may give a value the BIF quotes


class BillMapper:
    """Maps one bill at a time, every rule in Python (~40 µs a bill): the line path's every
    bill, and the bills the column path hands back. Gathers the warnings of the bills it maps
    (capped at MAX_WARNINGS_KEPT) and their counts."""

    def __init__(self, af: AusFile, settings: InvoiceSettings) -> None:
        self.af, self.settings, self.plan = af, settings, Plan(af, settings)
        self.columnar = ColumnarPlan(self.plan)
        self.warnings: list[dict] = []
        self.warning_counts: dict[str, int] = {}

    def warn(self, line: int, account: str, bill: str, column: str, value: str) -> None:
        key = f"{column} invalid, left blank"
        self.warning_counts[key] = self.warning_counts.get(key, 0) + 1
        self.keep_warning(line, account, bill, column)

    def keep_warning(self, line: int, account: str, bill: str, column: str) -> None:
        """List a warning (counted elsewhere) while the list has room."""
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            key = f"{column} invalid, left blank"
            self.warnings.append({"line": line, "account": account, "bill": bill, "column": column, "reason": key})

    def map_bill(self, rows: list[list[str]], line_nos: list[int], quote: bool) -> tuple[str, str]:
        """The BIF text (IH, CR, ID... lines) and TotalAmountDue of one bill; BadValue rejects
        the bill. `quote`: some source line holds a comma or a quote, so values are quoted."""
        p = self.plan
        for rule in p.rules:
            rule.check(rows, line_nos)
        first = rows[0]
        values = self._bill_values(first, line_nos[0])
        detail = self._detail_text(rows, line_nos, quote)
        return p.ih_row.encode(values, quote) + p.cr_row.encode(values, quote) + detail, values[p.total_src]

    def _bill_values(self, first: list[str], line_no: int) -> list[str]:
        """The first line's fields with each bill-level value converted (once, for IH and
        CR); a soft value that is invalid is blanked and warned about."""
        values = first.copy()
        blanked: list[SourceColumn] = []
        for col in self.plan.bill_conv.needed(first):
            raw = values[col.src]
            if not raw:
                continue
            try:
                value = col.value(raw)
            except BadValue:
                raise self._bill_value_error(first) from None
            if value is None:
                blanked.append(col)
                value = ""
            values[col.src] = value
        if blanked:
            p = self.plan
            for col in p.bill_conv_order:  # IH's columns, then CR's: one warning per row it blanks
                if col in blanked:
                    self.warn(line_no, first[p.acct_i], first[p.bill_i], col.name, first[col.src])
        return values

    def _bill_value_error(self, first: list[str]) -> BadValue:
        """The reject of a bill-level value that does not convert: the first bill column whose
        value breaks its rule, and the message of the first failure in IH-then-CR order."""
        p = self.plan
        message = next(e for c in p.bill_conv_order if (e := _failure(c, first[c.src])))
        col = next(c for c in p.bill_cols if c.type != "text" and _fails(c, first[c.src]))
        return BadValue(f"{col.name} {message}")

    def _detail_text(self, rows: list[list[str]], line_nos: list[int], quote: bool) -> str:
        """The ID lines of one bill, in LineNumber order (one row per LineNumber)."""
        p = self.plan
        numbers = [fields[p.line_i] for fields in rows]
        if p.line_order.ordered(numbers):  # the common case: one row per line, already in order
            return "".join(
                [p.id_row.encode(self._line_values(f, int(n)), quote) for f, n in zip(rows, numbers, strict=True)]
            )
        p.line_order.check(rows, line_nos)
        by_line: dict[int, list[list[str]]] = {}
        for fields in rows:
            by_line.setdefault(int(fields[p.line_i]), []).append(fields)
        detail = []
        for number in sorted(by_line):
            meters = by_line[number]
            if len(meters) == 1:
                detail.append(p.id_row.encode(self._line_values(meters[0], number), quote))
            else:
                row = p.id.blank()
                self._multi_meter_row(row, meters, number)
                detail.append(encode_row(row))
        return "".join(detail)

    def _line_values(self, fields: list[str], number: int) -> list[str]:
        """A one-meter line's fields with its line and meter values converted (a soft value
        that is invalid is blanked, without a warning, as before)."""
        values = fields.copy()
        for col in self.plan.id_conv.needed(fields):
            raw = values[col.src]
            if not raw:
                continue
            try:
                value = col.value(raw)
            except BadValue as exc:
                raise BadValue(f"LineNumber {number}: {col.name} {exc}") from None
            values[col.src] = "" if value is None else value
        return values

    def _multi_meter_row(self, row: list[str], meters: list[list[str]], number: int) -> None:
        p = self.plan
        if not self.settings.multiple_meters:
            raise BadValue(f"LineNumber {number} has {len(meters)} meters but multiple_meters is off")
        if len(meters) > MAX_METERS:
            raise BadValue(f"LineNumber {number} has {len(meters)} meters, more than {MAX_METERS}")
        first = meters[0]
        for col in p.line_cols:
            raw = first[col.src]
            if raw:
                row[col.targets[0]] = col.convert(raw) or ""
            elif col.required:
                raise BadValue(f"LineNumber {number}: {col.name} is missing (required)")
        for col in p.meter_cols:
            try:
                values = [(col.convert(m[col.src]) or "") if m[col.src] else "" for m in meters]
            except BadValue as exc:
                raise BadValue(f"LineNumber {number}: {col.name} {exc}") from None
            if col.kind == "meter":
                _pack_meters(row, col.targets, values)
            elif col.kind == "sum":
                present = [Decimal(v) for v in values if v]
                if present:
                    row[col.targets[0]] = plain_decimal(sum(present, Decimal(0)))
            elif any(values):  # "any": 1 if any meter's flag is Y
                row[col.targets[0]] = "1" if "1" in values else "0"


def _fails(col: SourceColumn, raw: str) -> bool:
    """Whether this column's value breaks its rule (to name the column in a reject)."""
    return _failure(col, raw) is not None


def _failure(col: SourceColumn, raw: str) -> str | None:
    """How this column's value breaks its rule (BadValue's message), or None.

    The message, not the exception: an exception kept past its handler holds its traceback,
    whose frames reach this one's callers, and a caller that holds the exception (the
    generator's variable in _bill_value_error) closes a reference cycle. Such a cycle kept a
    whole range's lines alive until the collector's next run, which then walked them all
    (~0.7 s of 12 s on the warn-heavy benchmark file)."""
    if not raw or col.type == "text":
        return None
    try:
        col.convert(raw)
    except BadValue as exc:
        return str(exc)
    return None


def _pack_meters(row: list[str], positions: list[int], values: list[str]) -> None:
    """First 5 meters joined by ';' in the main field; meters 6-25, 5 per field, to overflow."""
    for slot, start in enumerate(range(0, len(values), METERS_PER_FIELD)):
        row[positions[slot]] = ";".join(values[start : start + METERS_PER_FIELD])


def plain_decimal(value: Decimal) -> str:
    """An exact decimal without exponent."""
    return format(value, "f")


def map_bills(
    mapper: BillMapper, lines: list[str], numbers: Sequence[int], bills: Sequence[Sequence[int]],
    table: Table | None = None,
) -> Chunk:
    """Map these bills (each a list of indexes into `lines`; `table`: the lines already split
    by split_line, so the common bills are mapped a column at a time, see columnar). Returns the
    BIF text as UTF-8 bytes with the end offset and the TotalAmountDue of each invoice in it:
    one buffer crosses from a worker to the parent, not a string per invoice."""
    mapper.warnings, mapper.warning_counts = [], {}
    plan = mapper.plan
    if table is not None:
        texts, amounts, blanked = mapper.columnar.map_bills(table, bills)
    else:
        texts, amounts, blanked = [None] * len(bills), [None] * len(bills), {}
    rejects: list[Reject] = []
    per_bill = 0
    # the column path's blanked values, warned as map_bill warns them: counted in bulk (one per
    # row the column fills, as in map_bill), listed in bill order below while the list has room
    per_src = Counter(chain.from_iterable(blanked.values()))
    for col in plan.bill_conv_order:
        if per_src[col.src]:
            key = f"{col.name} invalid, left blank"
            mapper.warning_counts[key] = mapper.warning_counts.get(key, 0) + per_src[col.src]
    for b in [b for b, text in enumerate(texts) if text is None or b in blanked]:  # in order, as are warnings
        members = bills[b]
        if texts[b] is not None and table is not None:  # mapped a column at a time
            if len(mapper.warnings) < MAX_WARNINGS_KEPT:
                first = table.row(members[0])
                for col in plan.bill_conv_order:
                    if col.src in blanked[b]:
                        mapper.keep_warning(numbers[members[0]], first[plan.acct_i], first[plan.bill_i], col.name)
            continue
        source = list(map(lines.__getitem__, members))
        line_nos = list(map(numbers.__getitem__, members))
        rows = list(map(split_line, source)) if table is None else list(map(table.row, members))
        quote = any(map(_NEEDS_QUOTING.search, source))
        per_bill += 1
        try:
            texts[b], amounts[b] = mapper.map_bill(rows, line_nos, quote)
        except BadValue as exc:
            first = rows[0]
            rejects.append(Reject(line_nos, first[plan.acct_i], first[plan.bill_i], str(exc)))
    blobs = [text.encode() for text in texts if text is not None]
    text = b"".join(blobs)
    # the pre-upload check's row rules, run here in the worker on the rows it built (the
    # parent then checks only the FH rows; a chunk that is not proven is checked as a file)
    return Chunk(
        text,
        list(accumulate(map(len, blobs))),
        [amount for amount in amounts if amount is not None],  # the kept bills' (a bill left out has none)
        invoice_totals(text),
        rejects,
        mapper.warnings,
        mapper.warning_counts,
        per_bill,
    )
