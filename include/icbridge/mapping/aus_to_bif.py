"""AUS IC Daily Export -> BIF: every column, constant, meter rule and rejection rule.

Driven by the column table (aus_columns.csv) and the BIF registry (bif_fields.csv): each
column has a type (its value rule), a level (bill, line or meter) and its BIF target(s).
Bills are grouped in order of first appearance, mapped bill by bill (or a column at a time,
see columnar), and written as BIF parts into a staging folder that becomes visible only when
the whole file passed (its trailer is a control total over all of it): nothing partial is left.

Two ways to the same bytes. The range path (the common shape of a file): the parent reads
only the header and the trailer, cuts the data lines into byte ranges between bills, and
workers read, decode, group, map and encode a range each; the parent writes the parts as the
ranges come back, in order, adds up their figures and checks them against the trailer. The
file is never held whole, so memory does not grow with it. Whenever a file is not in that
shape or a range finds anything file-level (a bill whose lines fall in two ranges, a blank
line, a byte that does not decode, a trailer that does not add up, ...), the line path reads
the whole file, maps it the general way and raises the exact file-level error.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import multiprocessing
import operator
import os
import re
import shutil
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import accumulate, chain, compress
from pathlib import Path
from typing import Any

from icbridge.layouts.aus import (
    CONTROL_BYTES,
    AusFile,
    AusSource,
    BodyRange,
    FileRejected,
    IncompleteFile,
    columns,
    frame_body,
    parse_file_name,
    read_aus,
)
from icbridge.layouts.bif import (
    CRLF,
    check_bif,
    encode_field,
    encode_row,
    fh_passes,
    invoice_totals,
    registry,
    tuple_getter,
)
from icbridge.mapping.columnar import BlockTable, ColumnarPlan, Table
from icbridge.mapping.values import CONVERTERS, UNCHANGED, BadValue, parse_money
from icbridge.mapping.values import is_digits as _is_digits
from icbridge.processes import workers_may_start

MAX_METERS = 25
METERS_PER_FIELD = 5
MAX_WARNINGS_KEPT = 1000
DEFAULT_MAX_BYTES_PER_FILE = 20 << 20
"""20 MiB a BIF part (about 27 MiB of base64 in the UploadInvoiceFile envelope)."""
_FH_ROOM = 256  # bytes kept for a part's FH row when sizing it
_INVALID = "\x00invalid"  # memo of a soft value that is blanked and warned
_NEEDS_QUOTING = re.compile('[,"]')  # a source line with these may give a value the BIF quotes


@dataclass(frozen=True)
class InvoiceSettings:
    """What the mapping needs from a biller's configuration (and its IC connection)."""

    bid: str
    biller_guid: str
    invoice_format_guid: str
    invoice_type_id: str
    multiple_meters: bool = False
    max_invoices_per_file: int = 50_000
    max_bytes_per_file: int = DEFAULT_MAX_BYTES_PER_FILE
    reject_threshold_pct: float = 5.0
    column_aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Reject:
    lines: list[int]
    account: str
    bill: str
    reason: str


@dataclass
class BifPart:
    name: str
    path: Path
    invoices: int
    total: Decimal
    sha256: str


@dataclass
class MapResult:
    source: str
    bills_read: int
    bifs: list[BifPart]
    rejects: list[Reject]
    warnings: list[dict]
    warning_counts: dict[str, int]
    unknown_columns: list[str]

    @property
    def accepted(self) -> int:
        return sum(p.invoices for p in self.bifs)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "bills_read": self.bills_read,
            "accepted": self.accepted,
            "rejected": len(self.rejects),
            "warnings": self.warning_counts,
            "unknown_columns": self.unknown_columns,
            "bifs": [
                {"name": p.name, "invoices": p.invoices, "total": f"{p.total:.2f}", "sha256": p.sha256}
                for p in self.bifs
            ],
        }


@dataclass
class _Col:
    """One source column: where it is, how its value converts, where it goes in the BIF."""

    name: str
    src: int
    type: str
    required: bool
    targets: list
    kind: str = ""

    cache: dict[str, str] = field(default_factory=dict)

    def convert(self, raw: str) -> str | None:
        """The column's value rule, memoised (values repeat); None = blank it and warn."""
        if self.type == "text":
            return raw  # already trimmed, CR/TAB replaced by _split
        value = CONVERTERS[self.type](raw)
        if len(self.cache) < 50_000:
            self.cache[raw] = _INVALID if value is None else value
        return value

    def value(self, raw: str) -> str | None:
        """convert, looked up in the memo first; None = blank it (a soft rule). BadValue
        rejects the bill."""
        value = self.cache.get(raw)
        if value is None:
            value = self.convert(raw)
        return None if value is _INVALID else value

    def positions(self, row_type: str) -> list[int]:
        """BIF field positions this column fills in rows of row_type."""
        return [t if isinstance(t, int) else t[1] for t in self.targets if isinstance(t, int) or t[0] == row_type]


class _Conversions:
    """The converted columns of one row kind (bill level, or a one-meter detail line).

    Most values are already what their converter would return (a valid date, an amount
    with two decimals, ...): one regex over those values joined proves it for the whole row,
    so only the columns whose converter changes values (Y/N, phone, zip) are converted one
    by one. If the regex fails, every column is converted in its usual order, as before.
    (A range's common bills are converted a column at a time instead: see columnar.)"""

    def __init__(self, cols: list[_Col]) -> None:
        self.all = cols
        unchanged = [c for c in cols if c.type in UNCHANGED]
        self.rest = [c for c in cols if c.type not in UNCHANGED]
        self.unchanged_values = tuple_getter([c.src for c in unchanged])
        self.unchanged = re.compile("\x1f".join(f"(?:{UNCHANGED[c.type]})?" for c in unchanged))

    def needed(self, fields: list[str]) -> list[_Col]:
        """The columns of this row whose value must go through its converter."""
        if self.unchanged.fullmatch("\x1f".join(self.unchanged_values(fields))):
            return self.rest
        return self.all


class _RowTemplate:
    """One BIF row type as a %-format string, worked out once per file: RowType and the
    constants written in (already quoted), a ``%s`` for each field a column fills, nothing
    for a blank field. Encoding a row is then one itemgetter and one % (both C) instead of
    building a list of every field and joining it."""

    def __init__(self, layout, cols: list[_Col], constants: Mapping[str, str]) -> None:
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


def _limit(col: _Col, layouts: Mapping[str, Any]) -> int | None:
    """The longest value a text column may have: the smallest max_length of its BIF fields."""
    if col.type != "text":  # AccountNumber's own rule (account) already bounds it at 50
        return None
    lengths = []
    for target in col.targets:
        row_type, position = target if isinstance(target, tuple) else ("ID", target)
        lengths.append(layouts[row_type].fields[position].max_length)
    known = [n for n in lengths if n]
    return min(known) if known else None


class _Plan:
    """Column positions (source) and field positions (BIF) worked out once per file."""

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
        self.bill_cols: list[_Col] = []
        self.line_cols: list[_Col] = []
        self.meter_cols: list[_Col] = []
        bill_positions = []
        for c in columns():
            if c.name not in idx or c.name in ("BID", "LineNumber"):
                continue
            targets_spec = [t for t in c.bif_target.split(";") if t]
            if c.level == "bill":
                bill_positions.append(idx[c.name])
                targets = [(t.split(".")[0], layouts[t.split(".")[0]].index(t.split(".")[1])) for t in targets_spec]
                self.bill_cols.append(_Col(c.name, idx[c.name], c.type, c.required, targets))
            elif c.level == "line":
                targets = [self.id.index(t.split(".")[1]) for t in targets_spec]
                self.line_cols.append(_Col(c.name, idx[c.name], c.type, c.required, targets))
            else:
                kind, *names = c.bif_target.split(":")
                targets = [self.id.index(names[0])]
                if kind == "meter":
                    base = int(names[1].removeprefix("CustomField"))
                    targets += [self.id.index(f"CustomField{base + k}") for k in range(4)]
                self.meter_cols.append(_Col(c.name, idx[c.name], c.type, c.required, targets, kind))
        self.bill_key = operator.itemgetter(*bill_positions)
        # text values longer than their BIF field takes (bif_lengths.csv) reject the bill
        self.bill_limits = [(c, n) for c in self.bill_cols if (n := _limit(c, layouts))]
        self.line_limits = [(c, n) for c in self.line_cols if (n := _limit(c, {"ID": self.id}))]
        self.required = [c for c in self.bill_cols if c.required]
        self.required_getter = operator.itemgetter(*[c.src for c in self.required])
        ih_constants = {
            "RecordType": "R",
            "InvoiceFormatGuid": settings.invoice_format_guid,
            "AllowPartialPayments": "1",
            "BalanceForward": "1",
            "InvoiceTypeID": str(settings.invoice_type_id),
        }
        self.ih_row = _RowTemplate(self.ih, self.bill_cols, ih_constants)
        self.cr_row = _RowTemplate(self.cr, self.bill_cols, {})
        # a bill column's value is converted once for both rows; the order of the converted
        # columns in each row is the order of the old row-by-row conversion, which decides
        # which value a reject message quotes and the order of the warnings
        ih_conv = [c for c in self.bill_cols if c.type != "text" and c.positions("IH")]
        cr_conv = [c for c in self.bill_cols if c.type != "text" and c.positions("CR")]
        self.bill_conv = _Conversions([c for c in self.bill_cols if c in ih_conv or c in cr_conv])
        self.bill_conv_order = ih_conv + cr_conv
        # with one meter, a meter column is a plain column into its first field
        single = [
            _Col(c.name, c.src, c.type, c.required, c.targets[:1], c.kind, c.cache)
            for c in self.line_cols + self.meter_cols
        ]
        self.id_row = _RowTemplate(self.id, single, {})
        self.id_conv = _Conversions([c for c in single if c.type != "text"])
        self.total_src = next(c.src for c in self.bill_cols if ("IH", self.ih.index("TotalAmountDue")) in c.targets)
        self.columnar = ColumnarPlan(self)


class _Mapper:
    def __init__(self, af: AusFile, settings: InvoiceSettings) -> None:
        self.af, self.settings, self.plan = af, settings, _Plan(af, settings)
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
        for fields, line_no in zip(rows, line_nos, strict=True):
            if len(fields) != p.n_fields:
                raise BadValue(f"line {line_no} has {len(fields)} fields, the header has {p.n_fields}")
        first = rows[0]
        key0 = p.bill_key(first)
        for fields, line_no in zip(rows[1:], line_nos[1:], strict=False):
            if p.bill_key(fields) != key0:
                cols = [c.name for c in p.bill_cols if fields[c.src] != first[c.src]]
                raise BadValue(f"line {line_no} disagrees with line {line_nos[0]} on {', '.join(cols)}")
        if not all(p.required_getter(first)):
            missing = [c.name for c in p.required if not first[c.src]]
            raise BadValue(f"missing required value {', '.join(missing)}")
        for col, limit in p.bill_limits:
            if len(first[col.src]) > limit:
                raise BadValue(f"{col.name} is {len(first[col.src])} characters long; its BIF field takes {limit}")
        for col, limit in p.line_limits:
            for fields, line_no in zip(rows, line_nos, strict=True):
                if len(fields[col.src]) > limit:
                    raise BadValue(f"line {line_no}: {col.name} is {len(fields[col.src])} characters long; its BIF "
                                   f"field takes {limit}")
        values = self._bill_values(first, line_nos[0])
        detail = self._detail_text(rows, line_nos, quote)
        return p.ih_row.encode(values, quote) + p.cr_row.encode(values, quote) + detail, values[p.total_src]

    def _bill_values(self, first: list[str], line_no: int) -> list[str]:
        """The first line's fields with each bill-level value converted (once, for IH and
        CR); a soft value that is invalid is blanked and warned about."""
        values = first.copy()
        blanked: list[_Col] = []
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
        if _ascending(numbers):  # the common case: one row per line, already in order
            return "".join(
                [p.id_row.encode(self._line_values(f, int(n)), quote) for f, n in zip(rows, numbers, strict=True)]
            )
        by_line: dict[int, list[list[str]]] = {}
        seen: set[tuple[str, str]] = set()
        for fields, line_no in zip(rows, line_nos, strict=True):
            number = fields[p.line_i]
            if not _is_digits(number) or int(number) < 1:
                raise BadValue(f"line {line_no}: LineNumber {number!r} is not an integer >= 1")
            meter = fields[p.meter_i] if p.meter_i is not None else ""
            if (number, meter) in seen:
                raise BadValue(f"line {line_no}: duplicate line (LineNumber {number}, MeterNumber {meter!r})")
            seen.add((number, meter))
            by_line.setdefault(int(number), []).append(fields)
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
                row[col.targets[0]] = col.convert(raw)
            elif col.required:
                raise BadValue(f"LineNumber {number}: {col.name} is missing (required)")
        for col in p.meter_cols:
            try:
                values = [col.convert(m[col.src]) if m[col.src] else "" for m in meters]
            except BadValue as exc:
                raise BadValue(f"LineNumber {number}: {col.name} {exc}") from None
            if col.kind == "meter":
                _pack_meters(row, col.targets, values)
            elif col.kind == "sum":
                present = [Decimal(v) for v in values if v]
                if present:
                    row[col.targets[0]] = _plain(sum(present))
            elif any(values):  # "any": 1 if any meter's flag is Y
                row[col.targets[0]] = "1" if "1" in values else "0"


def _fails(col: _Col, raw: str) -> bool:
    """Whether this column's value breaks its rule (to name the column in a reject)."""
    return _failure(col, raw) is not None


def _failure(col: _Col, raw: str) -> str | None:
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


def _ascending(numbers: list[str]) -> bool:
    """Whether these LineNumbers are valid and strictly ascending (so distinct, in order)."""
    if not all(map(_is_digits, numbers)):
        return False
    if len(numbers) == 1:
        return numbers[0] != "0" * len(numbers[0])
    values = list(map(int, numbers))
    return values[0] >= 1 and all(map(operator.lt, values, values[1:]))


def _pack_meters(row: list[str], positions: list[int], values: list[str]) -> None:
    """First 5 meters joined by ';' in the main field; meters 6-25, 5 per field, to overflow."""
    for slot, start in enumerate(range(0, len(values), METERS_PER_FIELD)):
        row[positions[slot]] = ";".join(values[start : start + METERS_PER_FIELD])


def _split(line: str) -> list[str]:
    """Split on '|' and trim every value of blanks (``str.strip``: ASCII and Unicode white
    space, NBSP included, one rule for every value and the trailer); CR and TAB become a space
    (the BIF text rule) before that."""
    if "\t" in line or "\r" in line:
        line = line.replace("\t", " ").replace("\r", " ")
    if "| " in line or " |" in line or line[:1] == " " or line[-1:] == " " or not line.isascii():
        return [f.strip() for f in line.split("|")]
    return line.split("|")  # the common case: nothing to trim


def _plain(value: Decimal) -> str:
    """An exact decimal without exponent."""
    return format(value, "f")


def map_aus(
    source: bytes | Path,
    name: str,
    settings: InvoiceSettings,
    out_dir: Path,
    creation_date: date,
    workers: int | None = None,
) -> MapResult:
    """Map one AUS file to BIF part(s) in out_dir. Raises FileRejected for file-level rules.

    `source`: the file's bytes, or its path. From a path, a file in the common shape is read
    by ranges and its parts are written as they are produced, so memory stays bounded
    whatever the file's size (docs/benchmarks.md, "Initial data dump"); a file that needs the
    line path is read whole. `workers`: processes for the per-bill work; by default every
    core for large files.
    """
    parsed = parse_file_name(name)
    if parsed is None:
        raise FileRejected(name, "file name", "name does not follow {BID}_{YYYYMMDD[HHMMSS]}_{BillType}.TXT")
    if parsed.bid != settings.bid:
        raise FileRejected(name, "BID", f"file name BID {parsed.bid} is not this biller's BID {settings.bid}")
    src = AusSource.of(source)  # a DOS EOF byte after the trailer is not data
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        written = _map_ranges(src, name, settings, workers, staging, creation_date) if USE_RANGES else None
        if written is None:
            for leftover in staging.iterdir():  # parts of a range path that gave up
                leftover.unlink()
            mapped = _map_lines(src.whole(), name, settings, workers)
            writer = _PartWriter(settings, name, staging, creation_date)
            for chunk in mapped.chunks:
                writer.add(chunk)
            af = mapped.mapper.af
            written = writer.finish(af, mapped.bills, mapped.orphans, mapped.workers, af.control_characters)
        limit = settings.reject_threshold_pct * written.bills / 100
        if len(written.rejects) > limit:
            raise FileRejected(
                name,
                "reject threshold",
                f"{len(written.rejects)} of {written.bills} bills rejected, more than the biller's threshold "
                f"of {settings.reject_threshold_pct:g}%",
            )
        parts = written.parts
        unproven = [part for part, ok in zip(parts, written.proven, strict=True) if not ok]
        checked = _run(_check_part, [p.path for p in unproven], written.workers)
        for part, problems in zip(unproven, checked, strict=True):
            if problems:
                raise FileRejected(name, "BIF check", f"{part.name}: " + "; ".join(problems[:5]))
        for part in parts:
            final = out_dir / part.name
            part.path.replace(final)
            part.path = final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if src is not source:
            src.close()
    if written.control_characters:
        written.warning_counts["control characters removed"] = written.control_characters
    return MapResult(
        name, written.bills, parts, written.rejects, written.warnings, written.warning_counts,
        written.af.unknown_columns,
    )


USE_RANGES = True  # False: always the line path (for comparing the two)
PARALLEL_MIN_BILLS = 20_000
PARALLEL_MIN_BYTES = 12_000_000  # ~18,000 bills of the usual size
CHUNK_BILLS = 25_000  # line path: bills per task
# range path: bytes per task (~6,000 bills). Small tasks even out the 2 workers and cap each
# worker's memory: 250 MB at 250k bills, against 420 MB with 16 MB tasks (docs/benchmarks.md).
CHUNK_BYTES = 4_000_000

# One task's output: its BIF text as UTF-8 bytes, the end offset and TotalAmountDue of each
# invoice in it, the IH totals as check_bif reads them if its rows are proven to pass
# (bif.invoice_totals; else None), its rejects, warnings (capped) and warning counts.
_Chunk = tuple[bytes, list[int], list[str], list[str] | None, list[Reject], list[dict], dict[str, int]]


@dataclass
class _Mapped:
    """A file mapped by the line path but not yet written: what the parts are made of."""

    mapper: _Mapper
    bills: int
    orphans: list[Reject]  # short lines that name no bill: rejected first, as lines
    chunks: list[_Chunk]
    workers: int


# Work shared with forked worker processes (set before the pool forks, read-only after).
_JOB: tuple | None = None


# --------------------------------------------------------------------------- line path


def _map_lines(data: bytes, name: str, settings: InvoiceSettings, workers: int | None) -> _Mapped:
    """The general path: decode and split the whole file, group every line into its bill,
    check the trailer, then map the bills in chunks. Raises every file-level rejection."""
    global _JOB
    af = read_aus(data, name, settings.column_aliases)
    expected_lines, expected_bills, expected_total = af.trailer
    trailer_line = af.line_numbers[-1] + 1 if af.line_numbers else 2
    if expected_lines != len(af.lines):
        raise IncompleteFile(
            name, "trailer", f"trailer says {expected_lines} detail lines, file has {len(af.lines)}", trailer_line
        )
    mapper = _Mapper(af, settings)
    groups, orphans, total = _group_lines(
        _key_fields(af.lines, mapper.plan), af.line_numbers, mapper.plan, settings.bid, name
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
    _JOB = (mapper, members)
    try:
        chunks = _run(_map_chunk, tasks, workers)
    finally:
        _JOB = None
    return _Mapped(mapper, bills, orphans, chunks, workers)


def _key_fields(lines: list[str], plan: _Plan):
    """Each line split up to the fields that tell its bill and its AmountDue (not trimmed)."""
    return map(operator.methodcaller("split", "|", max(plan.acct_i, plan.bill_i, plan.bid_i, plan.amount_i) + 1), lines)


def _group_lines(
    split_lines, numbers, plan: _Plan, bid: str, name: str
) -> tuple[dict[tuple[str, str], list[int]], list[Reject], Decimal]:
    """Each bill's lines (indexes) in order of first appearance, the short lines that name
    no bill, and the sum of each bill's first AmountDue (for the trailer). Raises
    FileRejected for another biller's BID or a first AmountDue that does not parse.
    `split_lines`: each line's fields, from _key_fields, or from _split where no field holds
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


def _map_chunk(bounds: tuple[int, int]) -> _Chunk:
    """Line path task: map bills [start, stop) of the file."""
    mapper, members = _JOB
    af = mapper.af
    return _map_bills(mapper, af.lines, af.line_numbers, members[bounds[0] : bounds[1]])


def _map_bills(
    mapper: _Mapper, lines: list[str], numbers, bills: list[list[int]], table: Table | None = None
) -> _Chunk:
    """Map these bills (each a list of indexes into `lines`; `table`: the lines already split
    by _split, so the common bills are mapped a column at a time, see columnar). Returns the
    BIF text as UTF-8 bytes with the end offset and the TotalAmountDue of each invoice in it:
    one buffer crosses from a worker to the parent, not a string per invoice."""
    mapper.warnings, mapper.warning_counts = [], {}
    plan = mapper.plan
    if table is not None:
        texts, amounts, blanked = plan.columnar.map_bills(table, bills)
    else:
        texts, amounts, blanked = [None] * len(bills), [None] * len(bills), {}
    rejects: list[Reject] = []
    # the column path's blanked values, warned as map_bill warns them: counted in bulk (one per
    # row the column fills, as in map_bill), listed in bill order below while the list has room
    per_src = Counter(chain.from_iterable(blanked.values()))
    for col in plan.bill_conv_order:
        if per_src[col.src]:
            key = f"{col.name} invalid, left blank"
            mapper.warning_counts[key] = mapper.warning_counts.get(key, 0) + per_src[col.src]
    for b in [b for b, text in enumerate(texts) if text is None or b in blanked]:  # in order, as are warnings
        members = bills[b]
        if texts[b] is not None:  # mapped a column at a time
            if len(mapper.warnings) < MAX_WARNINGS_KEPT:
                first = table.row(members[0])  # type: ignore[union-attr]
                for col in plan.bill_conv_order:
                    if col.src in blanked[b]:
                        mapper.keep_warning(numbers[members[0]], first[plan.acct_i], first[plan.bill_i], col.name)
            continue
        source = list(map(lines.__getitem__, members))
        line_nos = list(map(numbers.__getitem__, members))
        rows = list(map(_split, source)) if table is None else list(map(table.row, members))
        quote = any(map(_NEEDS_QUOTING.search, source))
        try:
            texts[b], amounts[b] = mapper.map_bill(rows, line_nos, quote)
        except BadValue as exc:
            first = rows[0]
            rejects.append(Reject(line_nos, first[plan.acct_i], first[plan.bill_i], str(exc)))
    kept = [text is not None for text in texts]
    blobs = list(map(str.encode, compress(texts, kept)))
    text = b"".join(blobs)
    # the pre-upload check's row rules, run here in the worker on the rows it built (the
    # parent then checks only the FH rows; a chunk that is not proven is checked as a file)
    return (
        text,
        list(accumulate(map(len, blobs))),
        list(compress(amounts, kept)),
        invoice_totals(text),
        rejects,
        mapper.warnings,
        mapper.warning_counts,
    )


# --------------------------------------------------------------------------- range path


@dataclass
class _RangeResult:
    """What one byte range gave: its figures for the trailer check and its mapped bills."""

    lines: int
    bills: int  # bills that start in the range (orphans not included)
    orphans: list[Reject]
    total: Decimal
    key_hashes: array  # hash of each bill's key: a bill in two ranges shows up as a repeat
    control_characters: int  # C0 control characters removed (as read_aus removes them)
    chunk: _Chunk


def _map_ranges(
    source: AusSource, name: str, settings: InvoiceSettings, workers: int | None, staging: Path, day: date
) -> _Written | None:
    """The range path: ranges mapped by workers, their parts written into `staging` as the
    results come back, in order. None when the file needs the line path (see the module
    docstring); `staging` may then hold parts, which the caller removes."""
    framed = frame_body(source, name, settings.column_aliases)
    if framed is None:
        return None
    af, body = framed
    plan = _Plan(af, settings)
    if workers is None:
        workers = (os.cpu_count() or 1) if body.stop - body.start >= PARALLEL_MIN_BYTES else 1
    writer = _PartWriter(settings, name, staging, day)
    lines = bills = removed = 0
    total = Decimal(0)
    orphans: list[Reject] = []
    hashes: list[array] = []
    job = (af, settings, source, body.encoding, name)
    with _in_order(_map_range, _ranges(source, body, plan), workers, job) as results:
        for result in results:
            if result is None:
                return None
            lines += result.lines
            bills += result.bills + len(result.orphans)
            total += result.total
            removed += result.control_characters
            orphans.extend(result.orphans)
            hashes.append(result.key_hashes)
            writer.add(result.chunk)
    if (lines, bills, total) != af.trailer or _repeats(hashes):
        return None
    return writer.finish(af, bills, orphans, workers, removed)


def _repeats(hashes: list[array]) -> bool:
    """Whether a bill key hash shows up twice: a bill whose lines fell into two ranges (its
    key counts in both; the line path then groups it whole). 8 bytes a bill, sorted with
    numpy: a set of Python ints would take ~60 bytes a bill (240 MB at 4 million bills).
    The hashes of one file agree: every worker of one pool is forked from the same
    forkserver (one str hash seed), and a serial run hashes in this process."""
    import numpy as np

    keys = np.frombuffer(b"".join(hashes), dtype=np.int64).copy()
    keys.sort()
    return bool((keys[1:] == keys[:-1]).any())


def _ranges(source: AusSource, body: BodyRange, plan: _Plan) -> Iterator[tuple[int, int, int]]:
    """(start, stop, first line number) of each task, as they are found: ~CHUNK_BYTES of
    whole lines, cut between two lines of different bills (a bill's lines are usually
    contiguous). Reads the file once, a range at a time, to count its lines."""
    start, line = body.start, 2  # line 1 is the header
    while start < body.stop:
        stop = body.stop
        if start + CHUNK_BYTES < body.stop:
            stop = _bill_start_after(source, start + CHUNK_BYTES, body.stop, plan)
        yield start, stop, line
        line += source.count(b"\n", start, stop)
        start = stop


def _bill_start_after(source: AusSource, pos: int, stop: int, plan: _Plan) -> int:
    """The start of the first line after `pos` whose bill differs from the line before it
    (compared on the raw bytes: a cut that does split a bill is caught by _repeats)."""
    cut = source.find(b"\n", pos, stop) + 1 or stop
    previous = _raw_key(source.read(source.rfind(b"\n", 0, cut - 1) + 1, cut), plan)
    while cut < stop:
        end = source.find(b"\n", cut, stop) + 1 or stop
        key = _raw_key(source.read(cut, end), plan)
        if key is None or key != previous:
            return cut
        cut = end
    return stop


def _raw_key(line: bytes, plan: _Plan) -> tuple[bytes, bytes] | None:
    """(AccountNumber, BillNumber) of a raw line, or None when it is too short to have one."""
    fields = line.split(b"|", max(plan.acct_i, plan.bill_i) + 1)
    if len(fields) <= max(plan.acct_i, plan.bill_i):
        return None
    return fields[plan.acct_i].strip(), fields[plan.bill_i].strip()


def _init_range_job(af: AusFile, settings: InvoiceSettings, source: AusSource, encoding: str, name: str) -> None:
    """What every range task of one file shares (set in each worker, or here when serial)."""
    global _JOB
    _JOB = (_Mapper(af, settings), source, encoding, name)


@contextmanager
def _in_order(fn, tasks: Iterable, workers: int, job: tuple) -> Iterator[Iterator]:
    """fn over tasks, the results in order as they are ready. In this process when `workers`
    <= 1; else in a pool of `workers`: started by the forkserver for a source on disk (fresh
    processes holding their own range only, not the memory of the process that maps, which
    may be an Airflow task), forked for bytes in memory (the workers inherit them). A worker
    that dies (killed for memory, say) fails the file with BrokenProcessPool, never hangs it;
    leaving the block early cancels the tasks not started."""
    global _JOB
    source = job[2]
    if workers <= 1:
        _init_range_job(*job)
        try:
            yield map(fn, tasks)
        finally:
            _JOB = None
        return
    if source.path is None:
        ctx = multiprocessing.get_context("fork")
        gc.freeze()  # see _run
    else:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__, "numpy"])  # the workers' _spaced
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_range_job, initargs=job) as pool:
            with workers_may_start():  # the workers start as the tasks are submitted
                results = pool.map(fn, tasks)
            try:
                yield results
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        if source.path is None:
            gc.unfreeze()


def _map_range(task: tuple[int, int, int]) -> _RangeResult | None:
    """Range path task: read, decode, group and map the lines of [start, stop). None when
    the range holds something file-level (the line path then names it).

    The collector is off meanwhile: the range's lines, split once, are ~1.5 M tracked objects
    that live until the task ends, and every collection would walk them (that doubled the
    cost of splitting); they hold no cycles, so reference counting frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _map_range_lines(task)
    finally:
        if enabled:
            gc.enable()


def _map_range_lines(task: tuple[int, int, int]) -> _RangeResult | None:
    mapper, source, encoding, name = _JOB
    start, stop, first_line = task
    raw = source.read(start, stop)
    clean = raw.translate(None, CONTROL_BYTES)  # removed and counted, as read_aus does (C0 bytes are the
    removed = len(raw) - len(clean)  # same in cp1252 and UTF-8; translate is ~5x a regex search)
    try:
        text = clean.decode(encoding)
        if removed:  # read_aus decodes before it removes: a C0 byte inside a UTF-8 sequence is an encoding error
            raw.decode(encoding)
    except UnicodeDecodeError:
        return None
    spaced = _spaced(clean)
    del raw, clean
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    lines.pop()  # the range ends with a line break
    if not all(map(str.strip, lines)):  # a blank line: read_aus numbers and skips those
        return None
    numbers = range(first_line, first_line + len(lines))
    plain = "\t" not in text and "\r" not in text  # else _split replaces (a CR left is not in a CR LF)
    table = _table(text, lines, mapper.plan.n_fields, spaced or not plain, mapper.plan.columnar.prefix)
    grouped = mapper.plan.columnar.group(table, mapper.settings.bid) if plain and table else None
    if grouped is not None:
        bills, keys, total = grouped
        orphans: list[Reject] = []
    else:
        try:
            groups, orphans, total = _group_lines(
                _key_fields(lines, mapper.plan), numbers, mapper.plan, mapper.settings.bid, name
            )
        except FileRejected:
            return None
        bills, keys = list(groups.values()), list(groups)
    chunk = _map_bills(mapper, lines, numbers, bills, table)
    return _RangeResult(len(lines), len(bills), orphans, total, array("q", map(hash, keys)), removed, chunk)


def _table(text: str, lines: list[str], width: int, trims: bool, prefix: int | None = None) -> Table | None:
    """The range's lines split by _split into one Table; None when a line has another number
    of fields than the header (its bill is then rejected by map_bill). `trims`: _split may
    change a value (it trims around '|' and at either end of a line, and replaces TAB and
    CR; see _spaced). With nothing to trim and `prefix` (the bill fields come first), a
    BlockTable: the same columns and rows."""
    if not lines:
        return None
    if prefix is not None and not trims:
        blocks = BlockTable(lines, width, prefix)
        return blocks if blocks.whole else None
    if set(map(operator.methodcaller("count", "|"), lines)) != {width - 1}:
        return None
    if trims:
        return Table(list(chain.from_iterable(map(_split, lines))), width)
    flat = text.replace("\n", "|").split("|")  # nothing to trim: one split for the whole range
    flat.pop()  # after the last line break
    return Table(flat, width)


_EDGES = b"|\n\r"  # where _split trims a space next to
_WIDE_BLANKS = (b"\xa0", b"\x85", b"\xe1\x9a\x80", b"\xe2\x80", b"\xe2\x81\x9f", b"\xe3\x80\x80")
"""Bytes that may be a white-space character beyond ASCII that ``str.strip`` trims: NBSP (cp1252
0xA0, UTF-8 C2 A0), NEL, and the UTF-8 spaces U+1680, U+2000-U+200A/U+2028/U+2029/U+202F,
U+205F, U+3000. A match sends the range to _split's trimming (more often than needed: correct)."""


def _spaced(data: bytes) -> bool:
    """Whether a space of these lines (bytes of an ASCII-compatible encoding, CR LF or LF
    line breaks) begins or ends a value: it follows a '|', a line break or nothing, or comes
    before a '|' or a line break (where _split trims).

    With numpy over the bytes, from the spaces only: about 2 ms for a 4 MB range, where the
    four two-character searches (``"| " in text``, ...) took ~18 ms (CPython's search moves
    at most two characters a step for such a needle; docs/benchmarks.md)."""
    import numpy as np

    if any(blank in data for blank in _WIDE_BLANKS):  # a blank beyond ASCII: trimmed like a space
        return True
    codes = np.frombuffer(data, np.uint8)
    spaces = np.flatnonzero(codes == ord(" "))
    if not len(spaces):
        return False
    if spaces[0] == 0:
        return True
    around = np.concatenate((codes[spaces - 1], codes[np.minimum(spaces + 1, len(codes) - 1)]))
    return bool(((around == _EDGES[0]) | (around == _EDGES[1]) | (around == _EDGES[2])).any())  # ~15x np.isin


# --------------------------------------------------------------------------- both paths


def _check_part(path: Path) -> list[str]:
    return check_bif(path.read_bytes(), path.name)


def _run(fn, items: list, workers: int) -> list:
    """fn over items, in order: in forked worker processes when workers > 1 (2 cores here).
    A worker that dies fails the file with BrokenProcessPool, never hangs it."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    ctx = multiprocessing.get_context("fork")
    # Objects that exist at the fork go to the collector's permanent generation, so a
    # worker's garbage collections do not walk (and copy-on-write) the parent's objects.
    gc.freeze()
    try:
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=ctx) as pool:
            with workers_may_start():  # the workers start as the items are submitted
                results = pool.map(fn, items)
            return list(results)
    finally:
        gc.unfreeze()


@dataclass
class _Written:
    """A file mapped and its parts written to staging: what the MapResult is made of."""

    af: AusFile
    bills: int
    rejects: list[Reject]  # orphan lines first, then the bills' rejects in file order
    parts: list[BifPart]
    proven: list[bool]  # which parts are proven to pass check_bif (see _write_part)
    warnings: list[dict]
    warning_counts: dict[str, int]
    workers: int
    control_characters: int  # C0 control characters removed from the values


class _PartWriter:
    """Writes the invoices of the chunks given, in order and as they come, as parts of at
    most max_invoices_per_file invoices and max_bytes_per_file bytes (an invoice larger than
    that goes alone in a part): only the part being filled is held (slices of its chunks'
    bytes), so memory is bounded by the part size, not the file. Gathers the rejects and
    the warnings (capped)."""

    def __init__(self, settings: InvoiceSettings, source: str, staging: Path, day: date) -> None:
        self.settings, self.stem, self.staging, self.day = settings, Path(source).stem, staging, day
        self.rejects: list[Reject] = []
        self.warnings: list[dict] = []
        self.warning_counts: dict[str, int] = {}
        self.parts: list[BifPart] = []
        self.proven: list[bool] = []
        self.body: list[memoryview] = []  # the current part's invoices, as slices of the chunks' bytes
        self.size = 0  # bytes in body
        self.amounts: list[str] = []
        self.totals: list[str] | None = []  # the current part's proven IH totals; None: a chunk is not proven

    def add(self, chunk: _Chunk) -> None:
        blob, ends, chunk_amounts, chunk_totals, chunk_rejects, warnings, counts = chunk
        settings = self.settings
        self.rejects.extend(chunk_rejects)
        room = MAX_WARNINGS_KEPT - len(self.warnings)
        self.warnings.extend(warnings[: max(room, 0)])
        for key, n in counts.items():
            self.warning_counts[key] = self.warning_counts.get(key, 0) + n
        view, done = memoryview(blob), 0  # invoices of this chunk already in a part
        while done < len(ends):
            take = min(settings.max_invoices_per_file - len(self.amounts), len(ends) - done)
            start = ends[done - 1] if done else 0
            room = start + settings.max_bytes_per_file - _FH_ROOM - self.size  # the last end offset that fits
            fits = bisect.bisect_right(ends, room, done, done + take) - done
            full = fits < take
            take = max(fits, 0 if self.amounts else 1)  # an invoice larger than the cap goes alone
            if take:
                self.body.append(view[start : ends[done + take - 1]])
                self.size += ends[done + take - 1] - start
                self.amounts.extend(chunk_amounts[done : done + take])
                self.totals = (
                    None if self.totals is None or chunk_totals is None
                    else self.totals + chunk_totals[done : done + take]
                )
                done += take
            if full or len(self.amounts) >= settings.max_invoices_per_file:
                self._write()

    def _write(self) -> None:
        part, ok = _write_part(
            self.settings, self.stem, len(self.parts) + 1, self.body, self.amounts, self.totals, self.staging, self.day
        )
        self.parts.append(part)
        self.proven.append(ok)
        self.body, self.amounts, self.totals, self.size = [], [], [], 0

    def finish(
        self, af: AusFile, bills: int, orphans: list[Reject], workers: int, control_characters: int
    ) -> _Written:
        """Write the last part (a file of one part drops the _01 from its name)."""
        if self.amounts:
            self._write()
        if len(self.parts) == 1:
            single = self.parts[0]
            single.name = f"{self.stem}.BIF"
            renamed = self.staging / single.name
            single.path.replace(renamed)
            single.path = renamed
        return _Written(
            af, bills, [*orphans, *self.rejects], self.parts, self.proven, self.warnings, self.warning_counts, workers,
            control_characters,
        )


def _write_part(
    settings: InvoiceSettings,
    stem: str,
    number: int,
    body: list[memoryview],
    amounts: list[str],
    totals: list[str] | None,
    staging: Path,
    day: date,
) -> tuple[BifPart, bool]:
    """Write one BIF part: its FH row (count and total of its invoices), then their rows.
    Also says whether the part is proven to pass check_bif: its invoices' rows were proven
    where they were built (`totals`: their IH totals as the check reads them) and the FH row
    matches them."""
    fh_layout = registry()["FH"]
    fh = fh_layout.blank()
    total = sum(map(Decimal, amounts), Decimal(0))
    fh[fh_layout.index("BillerGuid")] = settings.biller_guid
    fh[fh_layout.index("FileCreationDate")] = day.strftime("%m/%d/%Y")
    fh[fh_layout.index("InvoiceCount")] = str(len(amounts))
    fh[fh_layout.index("TotalInvoiceAmount")] = f"{total:.2f}"
    name = f"{stem}_{number:02d}.BIF"
    path = staging / name
    digest = hashlib.sha256()
    fh_row = encode_row(fh).encode("utf-8")
    with path.open("wb") as out:
        for piece in [fh_row, *body]:
            out.write(piece)
            digest.update(piece)
    proven = totals is not None and fh_passes(fh_row, totals)
    return BifPart(name, path, len(amounts), total, digest.hexdigest()), proven
