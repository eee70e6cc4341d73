"""The AUS "IC Daily Export" TXT: column table as data, file name rule, framing and trailer.

See ../shared/specs/aus-ic-daily-export.md. The reader does the file-level work (name,
encoding, header, trailer control totals); per-bill rules live in icbridge.mapping.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path

from icbridge.errors import FileError

FILE_NAME = re.compile(r"^(?P<bid>\d+)_(?P<stamp>\d{14}|\d{8})_(?P<bill_type>[A-Z0-9]{1,8})\.(?i:txt)$")
MONEY = re.compile(r"-?\d+(?:\.\d{1,2})?")
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
EOF_MARKER = b"\x1a"  # DOS end-of-file (Ctrl-Z), written after the trailer by old exporters
# C0 control characters other than TAB, LF and CR (those have rules of their own): removed
# from every value (docs/architecture.md, "Where the specs were silent")
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])  # the same, as bytes


class FileRejected(FileError):  # noqa: N818 - the domain word is "rejected"
    """A file-level rejection: nothing of the file is uploaded. Names file, line and rule."""

    def __init__(self, file: str, rule: str, message: str, line: int | None = None) -> None:
        self.file, self.rule, self.message, self.line = file, rule, message, line
        where = f"{file} line {line}" if line else file
        super().__init__(f"{where}: {message} (rule: {rule})")


class IncompleteFile(FileRejected):
    """The trailer is missing or does not add up: the file may still be being written."""

    retry = True


@dataclass(frozen=True)
class AusColumn:
    name: str
    type: str
    required: bool
    level: str  # bill | line | meter
    bif_target: str


@cache
def columns() -> tuple[AusColumn, ...]:
    """The AUS column table (aus_columns.csv)."""
    text = resources.files("icbridge.layouts").joinpath("aus_columns.csv").read_text("utf-8")
    return tuple(
        AusColumn(r["column"], r["type"], r["required"] == "Y", r["level"], r["bif_target"])
        for r in csv.DictReader(io.StringIO(text))
    )


@dataclass(frozen=True)
class AusFileName:
    bid: str
    stamp: datetime
    bill_type: str


def parse_file_name(name: str) -> AusFileName | None:
    """`{BID}_{STAMP}_{BillType}.TXT`, or None when the name does not follow the convention."""
    m = FILE_NAME.match(name)
    if not m:
        return None
    stamp = m.group("stamp")
    try:
        when = datetime.strptime(stamp, "%Y%m%d%H%M%S" if len(stamp) == 14 else "%Y%m%d")
    except ValueError:
        return None
    return AusFileName(m.group("bid"), when, m.group("bill_type"))


@dataclass
class AusFile:
    """A decoded AUS file: header index, raw data lines (with physical line numbers), trailer."""

    name: str
    index: dict[str, int]  # canonical column name -> position
    n_fields: int
    lines: list[str]
    line_numbers: Sequence[int]  # physical line number of each entry of `lines`
    trailer: tuple[int, int, Decimal]
    unknown_columns: list[str] = field(default_factory=list)
    control_characters: int = 0  # C0 control characters removed from the values


def strip_eof_marker(data: bytes) -> bytes:
    """The file without the DOS end-of-file byte(s) (0x1A) at its very end, if any."""
    return data.rstrip(EOF_MARKER) if data.endswith(EOF_MARKER) else data


def is_trailer(line: str) -> bool:
    """Whether a line is the trailer (``TRAILER|…``; blanks around its fields allowed, as for every field)."""
    return line.split("|", 1)[0].strip().upper() == "TRAILER" and "|" in line


def _check_not_utf16(data: bytes, name: str) -> None:
    """Excel's "Unicode Text" is UTF-16: name the encoding instead of failing on the header."""
    head = data[:4096]
    if head.startswith(UTF16_BOMS) or (len(head) >= 4 and head.count(0) * 3 >= len(head)):
        raise FileRejected(name, "encoding", "the file is UTF-16 (Excel's \"Unicode Text\"); AUS exports are "
                           "Windows-1252 or UTF-8: save it as \"Text (Tab delimited)\"/CSV in ANSI or UTF-8", 1)


def decode(data: bytes, name: str) -> str:
    """Windows-1252, or UTF-8 when the file starts with a UTF-8 BOM; a UTF-16 file is
    rejected naming its encoding."""
    _check_not_utf16(data, name)
    encoding, body = ("utf-8", data[3:]) if data.startswith(UTF8_BOM) else ("cp1252", data)
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise FileRejected(
            name, "encoding", f"byte 0x{body[exc.start]:02x} is not valid {encoding}", line
        ) from None


def read_aus(data: bytes, name: str, aliases: Mapping[str, str] | None = None) -> AusFile:
    """Decode and frame an AUS file; raise FileRejected for any file-level rule.

    `aliases` maps our column name to the biller's own header name, so a biller whose
    export names a column differently is onboarded by configuration.
    """
    text = decode(data, name).replace("\r\n", "\n")
    text, removed = CONTROL_CHARACTERS.subn("", text)
    raw = text.split("\n")
    numbers: Sequence[int]
    if any(not ln.strip() for ln in raw[:-1]) or raw[-1].strip():
        # empty lines to skip, or no final newline: number the kept lines one by one
        kept = [(i, ln.rstrip("\r")) for i, ln in enumerate(raw, start=1) if ln.strip()]
        lines, numbers = [ln for _, ln in kept], [i for i, _ in kept]
    else:  # the common case: every line holds data, line N is raw[N - 1]
        lines, numbers = raw[:-1], range(1, len(raw))
    if not lines:
        raise IncompleteFile(name, "trailer", "file is empty: no header and no trailer", 1)
    index, unknown = _header_index(lines[0], name, numbers[0], aliases or {})
    trailer_no, trailer_line = numbers[-1], lines[-1]
    if len(lines) < 2 or not is_trailer(trailer_line):
        raise IncompleteFile(
            name, "trailer", "missing trailer: the file may still be being written or was cut off", trailer_no
        )
    trailer = _parse_trailer(trailer_line, name, trailer_no)
    return AusFile(
        name=name,
        index=index,
        n_fields=len(lines[0].split("|")),
        lines=lines[1:-1],
        line_numbers=numbers[1:-1],
        trailer=trailer,
        unknown_columns=unknown,
        control_characters=removed,
    )


def _header_index(
    header: str, name: str, line: int, aliases: Mapping[str, str]
) -> tuple[dict[str, int], list[str]]:
    wanted = {aliases.get(c.name, c.name).strip().lower(): c.name for c in columns()}
    index: dict[str, int] = {}
    unknown: list[str] = []
    for pos, raw_col in enumerate(header.split("|")):
        col = raw_col.strip()
        canonical = wanted.get(col.lower())
        if canonical is None:
            unknown.append(col)
        elif canonical in index:
            raise FileRejected(name, "header", f"column {col!r} appears twice in the header", line)
        else:
            index[canonical] = pos
    missing = [c.name for c in columns() if c.required and c.name not in index]
    if missing:
        raise FileRejected(name, "missing required column", f"header lacks {', '.join(missing)}", line)
    return index, unknown


def _parse_trailer(line_text: str, name: str, line: int) -> tuple[int, int, Decimal]:
    parts = [p.strip() for p in line_text.split("|")]
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit() or not MONEY.fullmatch(parts[3]):
        raise IncompleteFile(
            name, "trailer", "malformed trailer: expected TRAILER|detail_lines|bills|total_amount_due", line
        )
    try:
        total = Decimal(parts[3])
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise IncompleteFile(name, "trailer", "trailer total is not a decimal", line) from None
    return int(parts[1]), int(parts[2]), total


class AusSource:
    """An AUS file's bytes, held in memory or read by ranges from disk (``os.pread``), so a
    large file is never held whole. The DOS end-of-file byte(s) at its very end are not part
    of it (strip_eof_marker). Offsets are bytes; `size` is the length without those bytes.

    A source on disk pickles as its path (a worker process reopens it); one in memory as its
    bytes (workers forked from the holder inherit them instead)."""

    BLOCK = 8 << 20  # bytes per read when searching or counting on disk

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        if (data is None) == (path is None):
            raise ValueError("AusSource takes data or path")
        self.data, self.path = (strip_eof_marker(data) if data is not None else None), path
        self._fd: int | None = None
        if self.data is not None:
            self.size = len(self.data)
        elif path is not None:
            self._fd = os.open(path, os.O_RDONLY)
            size = os.fstat(self._fd).st_size
            while size:  # the trailing EOF bytes, as strip_eof_marker drops them
                tail = os.pread(self._fd, min(size, 4096), max(size - 4096, 0))
                kept = tail.rstrip(EOF_MARKER)
                size -= len(tail) - len(kept)
                if kept:
                    break
            self.size = size

    @classmethod
    def of(cls, source: bytes | Path | AusSource) -> AusSource:
        if isinstance(source, AusSource):
            return source
        return cls(path=Path(source)) if isinstance(source, (str, os.PathLike)) else cls(data=source)

    def __getstate__(self) -> dict:
        return {"data": self.data} if self.path is None else {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        AusSource.__init__(self, **state)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) (clipped to the file)."""
        stop = min(stop, self.size)
        if start >= stop:
            return b""
        if self.data is not None:
            return self.data[start:stop]
        assert self._fd is not None, "read from a closed AusSource"
        return os.pread(self._fd, stop - start, start)

    def whole(self) -> bytes:
        return self.data if self.data is not None else self.read(0, self.size)

    def find(self, sub: bytes, start: int, stop: int) -> int:
        """Like bytes.find over [start, stop); -1 when absent. `sub` is one byte."""
        if self.data is not None:
            return self.data.find(sub, start, stop)
        stop = min(stop, self.size)
        while start < stop:
            at = self.read(start, min(start + self.BLOCK, stop)).find(sub)
            if at >= 0:
                return start + at
            start += self.BLOCK
        return -1

    def rfind(self, sub: bytes, start: int, stop: int) -> int:
        """Like bytes.rfind over [start, stop); -1 when absent. `sub` is one byte."""
        if self.data is not None:
            return self.data.rfind(sub, start, stop)
        stop = min(stop, self.size)
        while stop > start:
            lo = max(start, stop - (64 << 10))
            at = self.read(lo, stop).rfind(sub)
            if at >= 0:
                return lo + at
            stop = lo
        return -1

    def count(self, sub: bytes, start: int, stop: int) -> int:
        """Like bytes.count over [start, stop). `sub` is one byte."""
        if self.data is not None:
            return self.data.count(sub, start, stop)
        stop = min(stop, self.size)
        return sum(self.read(lo, min(lo + self.BLOCK, stop)).count(sub) for lo in range(start, stop, self.BLOCK))


@dataclass(frozen=True)
class BodyRange:
    """Where the data lines of an AUS file are, without decoding them (see frame_body)."""

    start: int  # byte offset of the first data line
    stop: int  # byte offset just after the last data line's line break (= the trailer's start)
    encoding: str


def frame_body(
    source: AusSource, name: str, aliases: Mapping[str, str] | None = None
) -> tuple[AusFile, BodyRange] | None:
    """Header and trailer of a file in the common shape, the data lines left as bytes.

    A large file is mapped by workers that each read and decode their own byte range, so
    only the first and last line are read here. Returns None when the file is not in the
    common shape (no final line break, a blank first or last line, or anything read_aus
    would reject): read_aus then frames it, with its exact messages. The AusFile returned
    has no lines; the caller checks the data lines (blank lines, encoding) itself."""
    size = source.size
    try:
        _check_not_utf16(source.read(0, 4096), name)
    except FileRejected:
        return None  # read_aus rejects it, naming the encoding
    encoding, offset = ("utf-8", 3) if source.read(0, 3) == UTF8_BOM else ("cp1252", 0)
    header_end = source.find(b"\n", offset, size)
    trailer_start = source.rfind(b"\n", 0, size - 1) + 1
    if source.read(size - 1, size) != b"\n" or header_end < 0 or trailer_start <= header_end:
        return None
    try:
        header = _line_text(source.read(offset, header_end), encoding)
        trailer = _line_text(source.read(trailer_start, size - 1), encoding)
        if not header.strip() or not is_trailer(trailer) or CONTROL_CHARACTERS.search(header + trailer):
            return None
        index, unknown = _header_index(header, name, 1, aliases or {})
        totals = _parse_trailer(trailer, name, 0)
    except (UnicodeDecodeError, FileRejected):
        return None
    af = AusFile(name, index, len(header.split("|")), [], [], totals, unknown)
    return af, BodyRange(header_end + 1, trailer_start, encoding)


def _line_text(raw: bytes, encoding: str) -> str:
    """One line as read_aus holds it: decoded, without the CR of its CRLF."""
    return raw.decode(encoding).removesuffix("\r")
