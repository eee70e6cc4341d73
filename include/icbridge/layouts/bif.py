"""The BIF (Biller Invoice File): one writer, one reader and the pre-upload check.

The field registry is data (bif_registry: bif_fields.csv, IC's FileSpecIDs); the check's
fast proof is bif_proof. See ../shared/specs/bif.md.
"""

from __future__ import annotations

import csv
import io
import operator
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import IO

from icbridge.layouts.bif_proof import passes_whole
from icbridge.layouts.bif_registry import KIND_PATTERN, ROW_TYPES, BifField, RowLayout, registry

__all__ = [
    "ROW_TYPES", "BifField", "BifFile", "BifWriter", "RowLayout", "check_bif", "clean_text", "encode_field",
    "encode_row", "read_bif", "registry", "tuple_getter",
]
CRLF = "\r\n"
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')
_CONTROL = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f]")  # C0 and TAB: never in a BIF value (bif.md text rule)
_CONTROL_BYTES = bytes([*range(0x00, 0x0A), 0x0B, 0x0C, *range(0x0E, 0x20)])  # the same, as bytes

# The writer writes a value of any length (the mapping bounds none but its own rules), so the
# reader must read one: csv's default 131,072-character field limit would refuse what we wrote.
# Process-wide by csv's design; raised, never lowered.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
_AMOUNT = re.compile(r"-?\d+\.\d\d")
_DATE = re.compile(r"(\d\d)/(\d\d)/(\d{4})")
_INT = re.compile(r"\d+")


def clean_text(value: str) -> str:
    """BIF text rule: CR, LF and TAB become a space; trimmed."""
    if "\r" in value or "\n" in value or "\t" in value:
        value = value.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return value.strip()


def encode_field(value: str) -> str:
    """One field as a BIF line holds it: quoted (RFC 4180) only if it holds , " CR or LF."""
    if value and _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def encode_row(row: list[str]) -> str:
    """One BIF line (RFC 4180 quoting only where needed), CRLF-terminated."""
    line = ",".join(row)
    if line.count(",") == len(row) - 1 and '"' not in line and "\n" not in line and "\r" not in line:
        return line + CRLF  # the common case: nothing to quote
    return ",".join([encode_field(v) for v in row]) + CRLF


class BifWriter:
    """Writes BIF rows to a text stream (opened with newline='' and UTF-8, no BOM)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._layouts = registry()

    def write(self, row: list[str]) -> None:
        self._stream.write(encode_row(row))

    def write_many(self, rows: Iterable[list[str]]) -> None:
        self._stream.write("".join(encode_row(r) for r in rows))


@dataclass
class BifFile:
    """A BIF read back: the FH row and every other row, as (row_type, {field: value})."""

    header: dict[str, str]
    rows: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def invoices(self) -> Iterator[dict[str, dict | list]]:
        """Group rows per invoice: {'IH': {...}, 'CR': {...}, 'ID': [{...}, ...]}."""
        current: dict | None = None
        for row_type, values in self.rows:
            if row_type == "IH":
                if current:
                    yield current
                current = {"IH": values, "CR": {}, "ID": []}
            elif current is not None and row_type == "CR":
                current["CR"] = values
            elif current is not None and row_type == "ID":
                current["ID"].append(values)
        if current:
            yield current


def read_bif(data: bytes) -> BifFile:
    """Parse BIF bytes into named fields. Assumes a file that passed check_bif()."""
    layouts = registry()
    text = data.decode("utf-8")
    header: dict[str, str] = {}
    rows: list[tuple[str, dict[str, str]]] = []
    for rec in csv.reader(io.StringIO(text, newline="")):
        if not rec:
            continue
        layout = layouts.get(rec[0])
        if layout is None:
            continue
        values = dict(zip(layout.names, rec, strict=False))
        if rec[0] == "FH":
            header = values
        else:
            rows.append((rec[0], values))
    return BifFile(header, rows)


class _Problems:
    """Collects problems, capped so a broken million-row file still gives a short answer."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.more = name, limit, 0
        self.items: list[str] = []

    def add(self, line: int | None, rule: str, detail: str) -> None:
        if len(self.items) >= self.limit:
            self.more += 1
            return
        where = f"{self.name} line {line}" if line else self.name
        self.items.append(f"{where}: {detail} (rule: {rule})")

    def result(self) -> list[str]:
        if self.more:
            return [*self.items, f"{self.name}: and {self.more} more problems"]
        return self.items


@cache
def _valid_date(text: str) -> bool:
    m = _DATE.fullmatch(text)
    if not m:
        return False
    try:
        date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    except ValueError:
        return False
    return True


def _format_ok(kind: str, value: str) -> bool:
    if kind == "amount":
        return _AMOUNT.fullmatch(value) is not None
    if kind == "date":
        return _valid_date(value)
    if kind == "flag":
        return value in ("1", "0")
    if kind == "int":
        return _INT.fullmatch(value) is not None
    return True


class _RowCheck:
    """The required and format rules of one row type, checked in a few C-level calls: one
    regex over the row's formatted values joined, plus a calendar check of its dates."""

    def __init__(self, layout: RowLayout) -> None:
        self.n_fields = len(layout.fields)
        self.required = [(i, f) for i, f in enumerate(layout.fields) if f.required]
        self.formatted = [(i, f, f.format) for i, f in enumerate(layout.fields) if f.format]
        self.required_get = tuple_getter([i for i, _ in self.required])
        self.formatted_get = tuple_getter([i for i, _, _ in self.formatted])
        self.pattern = re.compile("\x1f".join(f"(?:{KIND_PATTERN[kind]})?" for _, _, kind in self.formatted))
        self.date_slots = [k for k, (_, _, kind) in enumerate(self.formatted) if kind == "date"]

    def row_ok(self, rec: list[str]) -> bool:
        if not all(self.required_get(rec)):
            return False
        values = self.formatted_get(rec)
        if not self.pattern.fullmatch("\x1f".join(values)):
            return False
        return all(_valid_date(values[k]) for k in self.date_slots if values[k])


def tuple_getter(indexes: list[int]):
    """itemgetter that always returns a tuple (itemgetter of one index does not)."""
    if not indexes:
        return lambda rec: ()
    if len(indexes) == 1:
        i = indexes[0]
        return lambda rec: (rec[i],)
    return operator.itemgetter(*indexes)


def check_bif(data: bytes, name: str = "BIF", max_problems: int = 50, prove: bool = True) -> list[str]:
    """The pre-upload checks of bif.md. Returns the problems found; empty means uploadable.
    `prove`: try the fast proof first (bif_proof; same answers, False for comparing them).

    Framing (UTF-8, no BOM, CRLF), row order (one FH first; each IH followed by exactly one
    CR, then its ID rows), column count per row type, required fields, value formats, and
    the FH figures recounted and re-added from the rows.
    """
    problems = _Problems(name, max_problems)
    bom = data.startswith(b"\xef\xbb\xbf")
    if bom:
        problems.add(1, "encoding", "file starts with a byte order mark; BIF is UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(line, "encoding", f"bytes are not UTF-8 ({exc.reason})")
        return problems.result()
    if not text:
        problems.add(None, "framing", "file is empty")
        return problems.result()
    if prove and not bom and passes_whole(data):
        return []  # its shape: rows ending in CRLF, no other line break, no control character
    if data.count(b"\n") != data.count(b"\r\n"):
        problems.add(None, "framing", "every line must end in CRLF")
    # C0 bytes are the same characters in UTF-8: a bytes pass (~10x a regex over the text)
    # tells whether to look for the first one
    control = _CONTROL.search(text) if len(data.translate(None, _CONTROL_BYTES)) != len(data) else None
    if control:
        problems.add(text.count("\n", 0, control.start()) + 1, "control character",
                     f"U+{ord(control.group()):04X} in a value (C0 controls and TAB are never sent)")
    return _check_records(text, problems)


def _check_records(text: str, problems: _Problems) -> list[str]:
    """check_bif's record-by-record pass: finds and names every problem (the slow path)."""
    layouts = registry()
    checks = {t: _RowCheck(lay) for t, lay in layouts.items()}
    total_index = layouts["IH"].index("TotalAmountDue")
    fh: list[str] | None = None
    invoices = 0
    total = Decimal(0)
    expect = "FH"  # what may come next: FH, then IH; after IH a CR; after CR an ID or IH
    line = ih_line = 0
    for line, rec in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not rec or rec == [""]:
            problems.add(line, "framing", "empty line")
            continue
        row_type = rec[0]
        spec = checks.get(row_type)
        if spec is None:
            problems.add(line, "row type", f"unknown row type {row_type!r}")
            continue
        if len(rec) != spec.n_fields:
            problems.add(line, "column count", f"{row_type} row has {len(rec)} fields, expected {spec.n_fields}")
            continue
        if row_type == "FH":
            if expect != "FH":
                problems.add(line, "row order", "FH must be the first row and appear once")
            fh = rec
            expect = "IH"
        elif row_type == "IH":
            if expect == "FH":
                problems.add(line, "row order", "IH before the FH row")
            elif expect == "CR":
                problems.add(ih_line, "row order", "IH not followed by its CR row")
            invoices += 1
            ih_line = line
            expect = "CR"
            amount = rec[total_index]
            if _AMOUNT.fullmatch(amount):
                total += Decimal(amount)
        elif row_type == "CR":
            if expect != "CR":
                problems.add(line, "row order", "CR row without an IH row just before it")
            expect = "ID|IH"
        else:  # ID
            if expect == "CR":  # name the IH that lacks its CR, once, not each of its ID rows
                problems.add(ih_line, "row order", "IH not followed by its CR row")
                expect = "ID|IH"
            elif expect != "ID|IH":
                problems.add(line, "row order", "ID row before its invoice's IH and CR rows")
        if not spec.row_ok(rec):
            for i, f in spec.required:
                if not rec[i]:
                    problems.add(line, "required", f"{row_type} {f.name} (FileSpecID {f.spec_id}) is empty")
            for i, f, kind in spec.formatted:
                value = rec[i]
                if value and not _format_ok(kind, value):
                    problems.add(line, kind, f"{row_type} {f.name} {value!r} is not a valid {kind}")
    if expect == "CR":
        problems.add(ih_line, "row order", "last IH has no CR row")
    if fh is None:
        problems.add(None, "row order", "no FH row")
    else:
        fh_layout = layouts["FH"]
        count = fh[fh_layout.index("InvoiceCount")]
        amount = fh[fh_layout.index("TotalInvoiceAmount")]
        if count != str(invoices):
            problems.add(1, "FH figures", f"FH InvoiceCount {count} but the file has {invoices} IH rows")
        try:
            fh_total = Decimal(amount)
        except InvalidOperation:
            fh_total = None
        if fh_total != total:
            problems.add(1, "FH figures", f"FH TotalInvoiceAmount {amount} but the IH rows add up to {total:.2f}")
    return problems.result()
