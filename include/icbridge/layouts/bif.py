"""The BIF (Biller Invoice File): field registry as data, one writer, one reader, the checks.

The registry is ``bif_fields.csv`` (IC's FileSpecIDs) and the value formats are
``bif_formats.csv``; a corrected IC layout is a data change, not a code change.
See ../shared/specs/bif.md.
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
from functools import cache, cached_property
from importlib import resources
from typing import IO

import re2

ROW_TYPES = ("FH", "IH", "CR", "ID")
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


@dataclass(frozen=True)
class BifField:
    row_type: str
    spec_id: int
    name: str
    required: bool
    description: str
    format: str | None = None
    max_length: int | None = None  # bif_lengths.csv; a longer value rejects its bill (mapping)


@dataclass(frozen=True)
class RowLayout:
    """The fields of one row type, in file order (RowType first, then ascending FileSpecID)."""

    row_type: str
    fields: tuple[BifField, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def blank(self) -> list[str]:
        """A row with RowType filled and every other field empty."""
        row = [""] * len(self.fields)
        row[0] = self.row_type
        return row


@cache
def registry() -> dict[str, RowLayout]:
    """Load the field registry from the package data (bif_fields.csv + bif_formats.csv)."""
    pkg = resources.files("icbridge.layouts")
    formats = dict(csv.reader(io.StringIO(pkg.joinpath("bif_formats.csv").read_text("utf-8"))))
    formats.pop("ic_field", None)
    lengths = {r["ic_field"]: int(r["max_length"])
               for r in csv.DictReader(io.StringIO(pkg.joinpath("bif_lengths.csv").read_text("utf-8")))}
    by_type: dict[str, list[BifField]] = {t: [] for t in ROW_TYPES}
    for rec in csv.DictReader(io.StringIO(pkg.joinpath("bif_fields.csv").read_text("utf-8"))):
        f = BifField(
            row_type=rec["row_type"],
            spec_id=int(rec["file_spec_id"]),
            name=rec["ic_field"],
            required=rec["required"].strip().upper() == "TRUE",
            description=rec["description"],
            format=formats.get(rec["ic_field"]),
            max_length=lengths.get(rec["ic_field"]),
        )
        by_type[f.row_type].append(f)
    layouts = {}
    for row_type, fields in by_type.items():
        fields.sort(key=lambda f: (f.name != "RowType", f.spec_id))
        layouts[row_type] = RowLayout(row_type, tuple(fields))
    return layouts


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
        self.name, self.limit, self.items, self.more = name, limit, [], 0

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


_KIND_PATTERN = {
    "amount": r"-?\d+\.\d\d",
    "date": r"\d\d/\d\d/\d{4}",
    "flag": r"[01]",
    "int": r"\d+",
}


class _RowCheck:
    """The required and format rules of one row type, checked in a few C-level calls: one
    regex over the row's formatted values joined, plus a calendar check of its dates."""

    def __init__(self, layout: RowLayout) -> None:
        self.n_fields = len(layout.fields)
        self.required = [(i, f) for i, f in enumerate(layout.fields) if f.required]
        self.formatted = [(i, f) for i, f in enumerate(layout.fields) if f.format]
        self.required_get = tuple_getter([i for i, _ in self.required])
        self.formatted_get = tuple_getter([i for i, _ in self.formatted])
        self.pattern = re.compile("\x1f".join(f"(?:{_KIND_PATTERN[f.format]})?" for _, f in self.formatted))
        self.date_slots = [k for k, (_, f) in enumerate(self.formatted) if f.format == "date"]

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


def check_bif(data: bytes, name: str = "BIF", max_problems: int = 50) -> list[str]:
    """The pre-upload checks of bif.md. Returns the problems found; empty means uploadable.

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
    if not bom and _passes_whole(data):
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
            for i, f in spec.formatted:
                value = rec[i]
                if value and not _format_ok(f.format, value):
                    problems.add(line, f.format, f"{row_type} {f.name} {value!r} is not a valid {f.format}")
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


# --------------------------------------------------------------------------- fast path
# A file that passes is the common case, and proving that takes one regex over the whole
# text (C speed) instead of a csv record loop in Python. The whole-file pattern accepts
# only what the record loop accepts (it is stricter: a quoted formatted field, a 29 February
# or a quoted CR/LF are left to the loop), so whatever it does not accept is checked by
# _check_records, which names the problems. The result is the same either way.

# any value: plain, or quoted; never a C0 control character (CR, LF and TAB included): a file
# the pattern accepts has no line break but its rows' CRLF and no control character
_FREE = r'(?:[^,"\x00-\x1f]*+|"(?:[^"\x00-\x1f]|"")*+")'
_FILLED = r'(?:[^,"\x00-\x1f]++|"(?:[^"\x00-\x1f]|"")++")'  # a value that is not empty
# dates that exist in every year 0001-9999: days 01-28, 29-30 except February, 31 in long
# months (29 February goes to the record loop, which asks the calendar)
_SAFE_DATE = (
    r"(?:(?:0[1-9]|1[0-2])/(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])/(?:29|30)|(?:0[13578]|1[02])/31)"
    r"/(?!0000)\d{4}"
)
_FAST_KIND = {**_KIND_PATTERN, "date": _SAFE_DATE}


def _row_pattern(layout: RowLayout) -> str:
    """One row of this type, CRLF included: RowType, then each field by its rules."""
    parts = [re.escape(layout.row_type)]
    for f in layout.fields[1:]:
        if f.format:
            parts.append(f"(?:{_FAST_KIND[f.format]})" + ("" if f.required else "?"))
        else:
            parts.append(_FILLED if f.required else _FREE)
    return ",".join(parts) + r"\r\n"


@cache
def _whole_file_pattern() -> re2._Regexp:
    """The shape of a good BIF, as UTF-8 bytes (FH, then per invoice IH, CR, ID...), compiled
    by RE2 (see as_re2). Its \\d is ASCII only: a file with other digits is left to the
    record loop, which gives the same answer more slowly."""
    rows = {t: _row_pattern(lay) for t, lay in registry().items()}
    return as_re2(f"{rows['FH']}(?:{rows['IH']}{rows['CR']}(?:{rows['ID']})*+)*+")


def _passes_whole(data: bytes) -> bool:
    """Whether the file (UTF-8) certainly passes every check of check_bif (False: not known)."""
    if _whole_file_pattern().fullmatch(data) is None:
        return False
    _, _, totals = _invoice_patterns()  # every IH row of such a file follows a line break
    amounts = [a.decode("ascii") for a in totals.findall(data)]
    return _fh_adds_up(data[: data.index(b"\r\n")].decode("utf-8"), amounts)


def _fh_adds_up(fh_line: str, amounts: list[str]) -> bool:
    """Whether the FH row's InvoiceCount and TotalInvoiceAmount are the recount and the sum
    of these IH TotalAmountDue values."""
    fh_layout = registry()["FH"]
    fh = next(csv.reader([fh_line]))
    if fh[fh_layout.index("InvoiceCount")] != str(len(amounts)):
        return False
    try:
        fh_total = Decimal(fh[fh_layout.index("TotalInvoiceAmount")])
    except InvalidOperation:
        return False
    return fh_total == sum((Decimal(a) for a in amounts if a), Decimal(0))


# The same proof in pieces, for a writer that builds a BIF from chunks of whole invoices
# (the mapping's workers): each chunk's rows are proven where they were built, and the FH
# row against the chunks' totals. A BIF made of an FH row and chunks that pass is one that
# _passes_whole accepts (its pattern is the FH row, then invoices, each on whole lines), so
# check_bif would return no problems; whatever is not proven goes through check_bif.


@cache
def _invoice_patterns() -> tuple[re.Pattern, re2._Regexp, re.Pattern]:
    """As bytes (the chunks are UTF-8; ASCII-only \\d makes them at most stricter): the FH
    row, a run of whole invoices (compiled by RE2, see as_re2), and the IH TotalAmountDue
    values in such a run."""
    rows = {t: _row_pattern(lay) for t, lay in registry().items()}
    fh = re.compile(rows["FH"].encode())
    invoices = as_re2(f"(?:{rows['IH']}{rows['CR']}(?:{rows['ID']})*+)*+")
    before = registry()["IH"].index("TotalAmountDue") - 1
    totals = re.compile(f"\nIH(?:,{_FREE}){{{before}}},({_KIND_PATTERN['amount']})?(?=[,\r])".encode())
    return fh, invoices, totals


# The one lookahead of the date patterns (a year that is not 0000), as RE2 has no lookaround
_YEAR_NOT_0000 = [
    (r"/(?!0000)\d{4}", r"/(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])"),
    (r"/(?!0000)[0-9]{4}", r"/(?:[1-9][0-9]{3}|0[1-9][0-9][0-9]|00[1-9][0-9]|000[1-9])"),
]
# classes Python and RE2 read otherwise: in a str pattern Python's are Unicode, RE2's ASCII;
# for bytes both are ASCII, but RE2's \s leaves out the vertical tab
_OTHER_CLASSES = {False: re.compile(r"\\[sSdDwWbB]"), True: re.compile(r"\\[sS]")}


def as_re2(pattern: str, for_bytes: bool = True) -> re2._Regexp | _Utf8Matcher:
    """A pattern of the project (Python's syntax) compiled by RE2, for the same language:
    for bytes, a byte a character (Latin-1, as Python's bytes patterns read them); else for
    str. Raises ValueError when RE2 would read it otherwise (lookaround, atomic groups, and
    the classes it reads otherwise: \\s, and for str \\d \\w \\b, which Python makes Unicode).

    Why: a fullmatch over megabytes (a mapped chunk's rows, a column of a range) runs at
    ~130 MB/s in Python's backtracking engine and ~550 MB/s in RE2's automaton (the row
    proof was a fifth of the mapping's CPU; docs/benchmarks.md, "Initial data dump"). The
    possessive quantifiers only spare Python's engine backtracking that cannot succeed (each
    repeated piece ends where the next cannot start); RE2 never backtracks, so they are
    dropped; the one lookahead is spelled out (tests/test_bif_fast_check.py compares the two
    engines on valid and damaged rows)."""
    syntax = pattern
    for lookahead, spelled in _YEAR_NOT_0000:
        syntax = syntax.replace(lookahead, spelled)
    syntax = syntax.replace("*+", "*").replace("++", "+")
    if any(mark in syntax for mark in ("(?=", "(?!", "(?<", "(?>", "?+", "}+")):
        raise ValueError(f"not in RE2's syntax: {pattern!r}")
    if _OTHER_CLASSES[for_bytes].search(syntax):
        raise ValueError(f"RE2 reads a class of it otherwise: {pattern!r}")
    options = re2.Options()
    options.never_capture = True
    options.max_mem = 64 << 20  # the automaton of the invoice pattern, built as it runs
    if not for_bytes:
        return _Utf8Matcher(re2.compile(syntax.encode("utf-8"), options))
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(syntax.encode("latin-1"), options)


class _Utf8Matcher:
    """An RE2 pattern for str, matched over the str's UTF-8 bytes. google-re2 takes a str
    itself, but then counts the characters of the whole match to give str offsets (as long
    again as the match); a fullmatch needs no offsets."""

    def __init__(self, regexp: re2._Regexp) -> None:
        self.regexp = regexp

    def fullmatch(self, text: str) -> re2._Match | None:
        # a lone surrogate (never in decoded AUS text) becomes bytes no class of ours matches
        return self.regexp.fullmatch(text.encode("utf-8", "surrogatepass"))


def invoice_totals(chunk: bytes) -> list[str] | None:
    """The IH TotalAmountDue values of a chunk of whole invoices (IH, CR, ID rows; no FH)
    whose rows certainly pass check_bif's row rules; None when that is not known."""
    _, invoices, totals = _invoice_patterns()
    if invoices.fullmatch(chunk) is None:
        return None
    # after a line break, as in _passes_whole: a literal start the engine can search for
    return [a.decode("ascii") for a in totals.findall(b"\n" + chunk)]


def fh_passes(fh_row: bytes, totals: list[str]) -> bool:
    """Whether a BIF of this FH row (CRLF included) followed by proven chunks whose
    invoice_totals are `totals` passes check_bif."""
    fh, _, _ = _invoice_patterns()
    return fh.fullmatch(fh_row) is not None and _fh_adds_up(fh_row.decode("utf-8")[:-2], totals)
