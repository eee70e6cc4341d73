"""AUS IC Daily Export -> BIF: every column, constant, meter rule and rejection rule.

Driven by the column table (aus_columns.csv) and the BIF registry (bif_fields.csv): each
column has a type (its value rule), a level (bill, line or meter) and its BIF target(s).
The file is read whole (its trailer is a control total over all of it), grouped into bills
in order of first appearance, mapped bill by bill, and written as BIF parts into a staging
folder that becomes visible only when the whole file passed: nothing partial is left.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import operator
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from icbridge.layouts.aus import AusFile, FileRejected, IncompleteFile, columns, parse_file_name, read_aus
from icbridge.layouts.bif import check_bif, encode_row, registry
from icbridge.mapping.values import CONVERTERS, BadValue, parse_money

MAX_METERS = 25
METERS_PER_FIELD = 5
MAX_WARNINGS_KEPT = 1000
_INVALID = "\x00invalid"  # memo of a soft value that is blanked and warned


@dataclass(frozen=True)
class InvoiceSettings:
    """What the mapping needs from a biller's configuration (and its IC connection)."""

    bid: str
    biller_guid: str
    invoice_format_guid: str
    invoice_type_id: str
    multiple_meters: bool = False
    max_invoices_per_file: int = 50_000
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

    def positions(self, row_type: str) -> list[int]:
        """BIF field positions this column fills in rows of row_type."""
        return [t if isinstance(t, int) else t[1] for t in self.targets if isinstance(t, int) or t[0] == row_type]


class _RowBuilder:
    """Builds one BIF row from a source line in one C-level call, then converts the few
    columns whose type needs it (text is taken as it is: _split already trimmed it)."""

    def __init__(self, layout, n_fields: int, cols: list[_Col], constants: dict[str, str]) -> None:
        extra = [layout.row_type, *constants.values(), ""]
        const_slot = {name: n_fields + 1 + k for k, name in enumerate(constants)}
        blank = n_fields + len(extra) - 1
        sources = {pos: col.src for col in cols for pos in col.positions(layout.row_type)}
        picks = []
        for pos, f in enumerate(layout.fields):
            if pos == 0:
                picks.append(n_fields)
            elif f.name in const_slot:
                picks.append(const_slot[f.name])
            else:
                picks.append(sources.get(pos, blank))
        self.extra = extra
        self.getter = operator.itemgetter(*picks)
        self.converted = [
            (col, col.positions(layout.row_type))
            for col in cols
            if col.type != "text" and col.positions(layout.row_type)
        ]

    def build(self, fields: list[str]) -> tuple[list[str], list[_Col]]:
        """The row, and the soft columns whose invalid value was blanked (to warn about)."""
        row = list(self.getter(fields + self.extra))
        blanked = []
        for col, positions in self.converted:
            raw = row[positions[0]]
            if not raw:
                continue
            value = col.cache.get(raw)
            if value is None:
                value = col.convert(raw)  # raises BadValue: the bill is rejected
            if value is None or value is _INVALID:
                blanked.append(col)
                value = ""
            for pos in positions:
                row[pos] = value
        return row, blanked


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
        self.required = [c for c in self.bill_cols if c.required]
        self.required_getter = operator.itemgetter(*[c.src for c in self.required])
        ih_constants = {
            "RecordType": "R",
            "InvoiceFormatGuid": settings.invoice_format_guid,
            "AllowPartialPayments": "1",
            "BalanceForward": "1",
            "InvoiceTypeID": str(settings.invoice_type_id),
        }
        self.ih_builder = _RowBuilder(self.ih, self.n_fields, self.bill_cols, ih_constants)
        self.cr_builder = _RowBuilder(self.cr, self.n_fields, self.bill_cols, {})
        # with one meter, a meter column is a plain column into its first field
        single = [
            _Col(c.name, c.src, c.type, c.required, c.targets[:1], c.kind, c.cache)
            for c in self.line_cols + self.meter_cols
        ]
        self.id_builder = _RowBuilder(self.id, self.n_fields, single, {})
        self.total_i = self.ih.index("TotalAmountDue")


class _Mapper:
    def __init__(self, af: AusFile, settings: InvoiceSettings) -> None:
        self.af, self.settings, self.plan = af, settings, _Plan(af, settings)
        self.warnings: list[dict] = []
        self.warning_counts: dict[str, int] = {}

    def warn(self, line: int, account: str, bill: str, column: str, value: str) -> None:
        key = f"{column} invalid, left blank"
        self.warning_counts[key] = self.warning_counts.get(key, 0) + 1
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            self.warnings.append({"line": line, "account": account, "bill": bill, "column": column, "reason": key})

    def map_bill(self, rows: list[list[str]], line_nos: list[int]) -> tuple[list[list[str]], Decimal]:
        """BIF rows (IH, CR, ID...) and TotalAmountDue of one bill; BadValue rejects the bill."""
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
        try:
            ih, blanked = p.ih_builder.build(first)
            cr, blanked_cr = p.cr_builder.build(first)
        except BadValue as exc:
            col = next(c for c in p.bill_cols if c.type != "text" and _fails(c, first[c.src]))
            raise BadValue(f"{col.name} {exc}") from None
        for col in blanked + blanked_cr:
            self.warn(line_nos[0], first[p.acct_i], first[p.bill_i], col.name, first[col.src])
        result = [ih, cr]
        result.extend(self._detail_rows(rows, line_nos))
        return result, Decimal(ih[p.total_i])

    def _detail_rows(self, rows: list[list[str]], line_nos: list[int]) -> list[list[str]]:
        p = self.plan
        by_line: dict[int, list[list[str]]] = {}
        seen: set[tuple[str, str]] = set()
        for fields, line_no in zip(rows, line_nos, strict=True):
            number = fields[p.line_i]
            if not number.isdigit() or int(number) < 1:
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
                try:
                    row, _ = p.id_builder.build(meters[0])
                except BadValue as exc:
                    col = next(c for c in p.line_cols + p.meter_cols if _fails(c, meters[0][c.src]))
                    raise BadValue(f"LineNumber {number}: {col.name} {exc}") from None
            else:
                row = p.id.blank()
                self._multi_meter_row(row, meters, number)
            detail.append(row)
        return detail

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
    if not raw or col.type == "text":
        return False
    try:
        col.convert(raw)
    except BadValue:
        return True
    return False


def _pack_meters(row: list[str], positions: list[int], values: list[str]) -> None:
    """First 5 meters joined by ';' in the main field; meters 6-25, 5 per field, to overflow."""
    for slot, start in enumerate(range(0, len(values), METERS_PER_FIELD)):
        row[positions[slot]] = ";".join(values[start : start + METERS_PER_FIELD])


def _split(line: str) -> list[str]:
    """Split on '|' and trim; CR and TAB become a space (the BIF text rule) before that."""
    if "\t" in line or "\r" in line:
        line = line.replace("\t", " ").replace("\r", " ")
    if "| " in line or " |" in line or line[:1] == " " or line[-1:] == " ":
        return [f.strip() for f in line.split("|")]
    return line.split("|")  # the common case: nothing to trim


def _plain(value: Decimal) -> str:
    """An exact decimal without exponent."""
    return format(value, "f")


def map_aus(
    data: bytes,
    name: str,
    settings: InvoiceSettings,
    out_dir: Path,
    creation_date: date,
    workers: int | None = None,
) -> MapResult:
    """Map one AUS file to BIF part(s) in out_dir. Raises FileRejected for file-level rules.

    `workers`: processes for the per-bill work; by default every core for large files.
    """
    parsed = parse_file_name(name)
    if parsed is None:
        raise FileRejected(name, "file name", "name does not follow {BID}_{YYYYMMDD[HHMMSS]}_{BillType}.TXT")
    if parsed.bid != settings.bid:
        raise FileRejected(name, "BID", f"file name BID {parsed.bid} is not this biller's BID {settings.bid}")
    af = read_aus(data, name, settings.column_aliases)
    expected_lines, expected_bills, expected_total = af.trailer
    trailer_line = af.line_numbers[-1] + 1 if af.line_numbers else 2
    if expected_lines != len(af.lines):
        raise IncompleteFile(
            name, "trailer", f"trailer says {expected_lines} detail lines, file has {len(af.lines)}", trailer_line
        )
    mapper = _Mapper(af, settings)
    p = mapper.plan
    key_width = max(p.acct_i, p.bill_i, p.bid_i, p.amount_i) + 1
    key_min = max(p.acct_i, p.bill_i, p.bid_i) + 1  # fields needed to tell a line's bill
    groups: dict[tuple[str, str], list[int]] = {}
    total = Decimal(0)
    orphan_rejects: list[Reject] = []
    acct_i, bill_i, bid_i, amount_i = p.acct_i, p.bill_i, p.bid_i, p.amount_i
    for i, line in enumerate(af.lines):
        fields = line.split("|", key_width)
        if len(fields) < key_min:  # a short line that still names its bill joins it (and rejects it)
            orphan_rejects.append(
                Reject([af.line_numbers[i]], "", "", f"line has {len(fields)} fields, the header has {p.n_fields}")
            )
            continue
        bid = fields[bid_i]
        if bid != settings.bid and bid.strip() != settings.bid:
            raise FileRejected(name, "BID", f"BID {bid!r} is not this biller's BID {settings.bid}", af.line_numbers[i])
        key = (fields[acct_i].strip(), fields[bill_i].strip())
        members = groups.get(key)
        if members is None:
            groups[key] = [i]
            raw_amount = fields[amount_i] if amount_i < len(fields) else None
            amount = parse_money(raw_amount.strip()) if raw_amount is not None else None
            if amount is None:
                what = f"AmountDue {raw_amount!r} does not parse" if raw_amount is not None else "AmountDue is missing"
                raise FileRejected(
                    name,
                    "trailer",
                    f"{what}, so the trailer total cannot be checked",
                    af.line_numbers[i],
                )
            total += Decimal(amount)
        else:
            members.append(i)
    bills = len(groups) + len(orphan_rejects)
    if workers is None:
        workers = (os.cpu_count() or 1) if len(groups) >= PARALLEL_MIN_BILLS else 1
    if expected_bills != bills:
        raise IncompleteFile(name, "trailer", f"trailer says {expected_bills} bills, file has {bills}", trailer_line)
    if expected_total != total:
        raise IncompleteFile(
            name, "trailer", f"trailer total {expected_total:.2f} but the bills add up to {total:.2f}", trailer_line
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        rejects, parts = _map_and_write(mapper, list(groups.values()), name, staging, creation_date, workers)
        rejects = orphan_rejects + rejects
        limit = settings.reject_threshold_pct * bills / 100
        if len(rejects) > limit:
            raise FileRejected(
                name,
                "reject threshold",
                f"{len(rejects)} of {bills} bills rejected, more than the biller's threshold "
                f"of {settings.reject_threshold_pct:g}%",
            )
        for part, problems in zip(parts, _run(_check_part, [p.path for p in parts], workers), strict=True):
            if problems:
                raise FileRejected(name, "BIF check", f"{part.name}: " + "; ".join(problems[:5]))
        for part in parts:
            final = out_dir / part.name
            part.path.replace(final)
            part.path = final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MapResult(name, bills, parts, rejects, mapper.warnings, mapper.warning_counts, af.unknown_columns)


# Work shared with forked worker processes (set before the pool forks, read-only after).
_JOB: tuple[_Mapper, list[list[int]]] | None = None
PARALLEL_MIN_BILLS = 20_000
CHUNK_BILLS = 25_000


def _map_chunk(bounds: tuple[int, int]) -> tuple[list[str], list[Decimal], list[Reject], list[dict], dict[str, int]]:
    """Map bills [start, stop) of the file: one encoded text block and amount per invoice."""
    mapper, bills = _JOB
    mapper.warnings, mapper.warning_counts = [], {}
    af = mapper.af
    texts: list[str] = []
    amounts: list[Decimal] = []
    rejects: list[Reject] = []
    for members in bills[bounds[0] : bounds[1]]:
        line_nos = [af.line_numbers[i] for i in members]
        rows = [_split(af.lines[i]) for i in members]
        try:
            bif_rows, amount = mapper.map_bill(rows, line_nos)
        except BadValue as exc:
            first = rows[0]
            rejects.append(Reject(line_nos, first[mapper.plan.acct_i], first[mapper.plan.bill_i], str(exc)))
            continue
        texts.append("".join([encode_row(r) for r in bif_rows]))
        amounts.append(amount)
    return texts, amounts, rejects, mapper.warnings, mapper.warning_counts


def _check_part(path: Path) -> list[str]:
    return check_bif(path.read_bytes(), path.name)


def _run(fn, items: list, workers: int) -> list:
    """fn over items, in order: in forked worker processes when workers > 1 (2 cores here)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(workers, len(items))) as pool:
        return pool.map(fn, items, chunksize=1)


def _map_and_write(
    mapper: _Mapper,
    bills: list[list[int]],
    source: str,
    staging: Path,
    creation_date: date,
    workers: int,
) -> tuple[list[Reject], list[BifPart]]:
    global _JOB
    settings = mapper.settings
    chunks = [(i, min(i + CHUNK_BILLS, len(bills))) for i in range(0, len(bills), CHUNK_BILLS)]
    _JOB = (mapper, bills)
    try:
        results = _run(_map_chunk, chunks, workers)
    finally:
        _JOB = None
    mapper.warnings, mapper.warning_counts = [], {}
    stem = Path(source).stem
    rejects: list[Reject] = []
    parts: list[BifPart] = []
    body: list[str] = []
    total = Decimal(0)
    for texts, amounts, chunk_rejects, warnings, counts in results:
        rejects.extend(chunk_rejects)
        room = MAX_WARNINGS_KEPT - len(mapper.warnings)
        mapper.warnings.extend(warnings[: max(room, 0)])
        for key, n in counts.items():
            mapper.warning_counts[key] = mapper.warning_counts.get(key, 0) + n
        for text, amount in zip(texts, amounts, strict=True):
            body.append(text)
            total += amount
            if len(body) >= settings.max_invoices_per_file:
                parts.append(_write_part(settings, stem, len(parts) + 1, body, total, staging, creation_date))
                body, total = [], Decimal(0)
    if body:
        parts.append(_write_part(settings, stem, len(parts) + 1, body, total, staging, creation_date))
    if len(parts) == 1:
        single = parts[0]
        single.name = f"{stem}.BIF"
        renamed = staging / single.name
        single.path.replace(renamed)
        single.path = renamed
    return rejects, parts


def _write_part(
    settings: InvoiceSettings, stem: str, number: int, body: list[str], total: Decimal, staging: Path, day: date
) -> BifPart:
    fh_layout = registry()["FH"]
    fh = fh_layout.blank()
    fh[fh_layout.index("BillerGuid")] = settings.biller_guid
    fh[fh_layout.index("FileCreationDate")] = day.strftime("%m/%d/%Y")
    fh[fh_layout.index("InvoiceCount")] = str(len(body))
    fh[fh_layout.index("TotalInvoiceAmount")] = f"{total:.2f}"
    data = (encode_row(fh) + "".join(body)).encode("utf-8")
    name = f"{stem}_{number:02d}.BIF"
    path = staging / name
    path.write_bytes(data)
    return BifPart(name, path, len(body), total, hashlib.sha256(data).hexdigest())
