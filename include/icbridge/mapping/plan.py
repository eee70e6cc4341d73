"""The plan of one AUS file: where each source column is, how its value converts and which
BIF fields it fills, worked out once per file from the column table (layouts/aus_columns.csv)
and the BIF registry. Both paths of the mapping (per bill, and a column at a time) read it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from icbridge.layouts.aus import AusFile, columns
from icbridge.layouts.bif import CRLF, encode_field, registry, tuple_getter
from icbridge.mapping.rules import (
    BillColumnsAgree,
    BillLengths,
    BillRule,
    FieldCount,
    LineLengths,
    LineNumbers,
    RequiredValues,
)
from icbridge.mapping.types import InvoiceSettings
from icbridge.mapping.values import CONVERTERS, UNCHANGED

Target = tuple[str, int] | int
INVALID = "\x00invalid"  # memo of a soft value that is blanked and warned


@dataclass
class SourceColumn:
    """One source column: where it is, how its value converts, where it goes in the BIF."""

    name: str
    src: int
    type: str
    required: bool
    targets: list[Any]  # (row type, field position) of a bill column (Target); an ID row's field position (int)
    kind: str = ""

    cache: dict[str, str] = field(default_factory=dict)

    def convert(self, raw: str) -> str | None:
        """The column's value rule, memoised (values repeat); None = blank it and warn."""
        if self.type == "text":
            return raw  # already trimmed, CR/TAB replaced by _split
        value = CONVERTERS[self.type](raw)
        if len(self.cache) < 50_000:
            self.cache[raw] = INVALID if value is None else value
        return value

    def value(self, raw: str) -> str | None:
        """convert, looked up in the memo first; None = blank it (a soft rule). BadValue
        rejects the bill."""
        value = self.cache.get(raw)
        if value is None:
            value = self.convert(raw)
        return None if value is INVALID else value

    def positions(self, row_type: str) -> list[int]:
        """BIF field positions this column fills in rows of row_type."""
        return [t if isinstance(t, int) else t[1] for t in self.targets if isinstance(t, int) or t[0] == row_type]


class RowConversions:
    """The converted columns of one row kind (bill level, or a one-meter detail line).

    Most values are already what their converter would return (a valid date, an amount
    with two decimals, ...): one regex over those values joined proves it for the whole row,
    so only the columns whose converter changes values (Y/N, phone, zip) are converted one
    by one. If the regex fails, every column is converted in its usual order, as before.
    (A range's common bills are converted a column at a time instead: see columnar.)"""

    def __init__(self, cols: list[SourceColumn]) -> None:
        self.all = cols
        unchanged = [c for c in cols if c.type in UNCHANGED]
        self.rest = [c for c in cols if c.type not in UNCHANGED]
        self.unchanged_values = tuple_getter([c.src for c in unchanged])
        self.unchanged = re.compile("\x1f".join(f"(?:{UNCHANGED[c.type]})?" for c in unchanged))

    def needed(self, fields: list[str]) -> list[SourceColumn]:
        """The columns of this row whose value must go through its converter."""
        if self.unchanged.fullmatch("\x1f".join(self.unchanged_values(fields))):
            return self.rest
        return self.all


class RowTemplate:
    """One BIF row type as a %-format string, worked out once per file: RowType and the
    constants written in (already quoted), a ``%s`` for each field a column fills, nothing
    for a blank field. Encoding a row is then one itemgetter and one % (both C) instead of
    building a list of every field and joining it."""

    def __init__(self, layout, cols: list[SourceColumn], constants: Mapping[str, str]) -> None:
        sources = {pos: col.src for col in cols for pos in col.positions(layout.row_type)}
        parts, picks = [layout.row_type], []
        for pos, f in enumerate(layout.fields[1:], start=1):
            if f.name in constants:
                parts.append(encode_field(constants[f.name]).replace("%", "%%"))
            elif pos in sources:
                parts.append("%s")
                picks.append(sources[pos])
            else:
                parts.append("")
        self.format = ",".join(parts) + CRLF
        self.picks = picks  # source position of each %s
        self.pick = tuple_getter(picks)

    def encode(self, fields: list[str], quote: bool) -> str:
        """The row's line from a source line's (converted) fields; `quote`: some value may
        hold a comma or a quote (rare), so each goes through the BIF quoting rule."""
        values = self.pick(fields)
        if quote:
            values = tuple(map(encode_field, values))
        return self.format % values


def column_limit(col: SourceColumn, layouts: Mapping[str, Any]) -> int | None:
    """The longest value a text column may have: the smallest max_length of its BIF fields."""
    if col.type != "text":  # AccountNumber's own rule (account) already bounds it at 50
        return None
    lengths = []
    for target in col.targets:
        row_type, position = target if isinstance(target, tuple) else ("ID", target)
        lengths.append(layouts[row_type].fields[position].max_length)
    known = [n for n in lengths if n]
    return min(known) if known else None


class Plan:
    """Column positions (source) and field positions (BIF) worked out once per file, the
    bill rules bound to them, and the BIF row templates."""

    def __init__(self, af: AusFile, settings: InvoiceSettings) -> None:
        layouts = registry()
        self.ih, self.cr, self.id = layouts["IH"], layouts["CR"], layouts["ID"]
        idx = af.index
        self.bid_i = idx["BID"]
        self.acct_i = idx["AccountNumber"]
        self.bill_i = idx["BillNumber"]
        self.amount_i = idx["AmountDue"]
        self.line_i = idx["LineNumber"]
        self.meter_i = idx.get("MeterNumber")
        self.n_fields = af.n_fields
        self.bill_cols: list[SourceColumn] = []
        self.line_cols: list[SourceColumn] = []
        self.meter_cols: list[SourceColumn] = []
        bill_positions = []
        for c in columns():
            if c.name not in idx or c.name in ("BID", "LineNumber"):
                continue
            targets_spec = [t for t in c.bif_target.split(";") if t]
            if c.level == "bill":
                bill_positions.append(idx[c.name])
                targets: list[Target] = [
                    (t.split(".")[0], layouts[t.split(".")[0]].index(t.split(".")[1])) for t in targets_spec
                ]
                self.bill_cols.append(SourceColumn(c.name, idx[c.name], c.type, c.required, targets))
            elif c.level == "line":
                targets = [self.id.index(t.split(".")[1]) for t in targets_spec]
                self.line_cols.append(SourceColumn(c.name, idx[c.name], c.type, c.required, targets))
            else:
                kind, *names = c.bif_target.split(":")
                targets = [self.id.index(names[0])]
                if kind == "meter":
                    base = int(names[1].removeprefix("CustomField"))
                    targets += [self.id.index(f"CustomField{base + k}") for k in range(4)]
                self.meter_cols.append(SourceColumn(c.name, idx[c.name], c.type, c.required, targets, kind))
        self.bill_key = operator.itemgetter(*bill_positions)
        # the bill rules (rules.py), in the per-bill mapper's order; text values longer than
        # their BIF field takes (bif_lengths.csv) reject the bill
        self.rules: list[BillRule] = [
            FieldCount(self.n_fields),
            BillColumnsAgree(self.bill_cols, self.bill_key),
            RequiredValues([c for c in self.bill_cols if c.required]),
            BillLengths([(c, n) for c in self.bill_cols if (n := column_limit(c, layouts))]),
            LineLengths([(c, n) for c in self.line_cols if (n := column_limit(c, {"ID": self.id}))]),
        ]
        self.line_order = LineNumbers(self.line_i, self.meter_i)  # checked after the bill values convert
        ih_constants = {
            "RecordType": "R",
            "InvoiceFormatGuid": settings.invoice_format_guid,
            "AllowPartialPayments": "1",
            "BalanceForward": "1",
            "InvoiceTypeID": str(settings.invoice_type_id),
        }
        self.ih_row = RowTemplate(self.ih, self.bill_cols, ih_constants)
        self.cr_row = RowTemplate(self.cr, self.bill_cols, {})
        # a bill column's value is converted once for both rows; the order of the converted
        # columns in each row is the order of the old row-by-row conversion, which decides
        # which value a reject message quotes and the order of the warnings
        ih_conv = [c for c in self.bill_cols if c.type != "text" and c.positions("IH")]
        cr_conv = [c for c in self.bill_cols if c.type != "text" and c.positions("CR")]
        self.bill_conv = RowConversions([c for c in self.bill_cols if c in ih_conv or c in cr_conv])
        self.bill_conv_order = ih_conv + cr_conv
        # with one meter, a meter column is a plain column into its first field
        single = [
            SourceColumn(c.name, c.src, c.type, c.required, c.targets[:1], c.kind, c.cache)
            for c in self.line_cols + self.meter_cols
        ]
        self.id_row = RowTemplate(self.id, single, {})
        self.id_conv = RowConversions([c for c in single if c.type != "text"])
        self.total_src = next(c.src for c in self.bill_cols if ("IH", self.ih.index("TotalAmountDue")) in c.targets)
