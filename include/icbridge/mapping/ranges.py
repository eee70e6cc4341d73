"""The range path: the common shape of a file, mapped without ever holding it whole.

The parent reads only the header and the trailer, cuts the data lines into byte ranges
between bills, and workers read, decode, group and map a range each (a column at a time
where they can, see columnar); the parent writes the parts as the ranges come back, in
order, adds up their figures and checks them against the trailer, so memory does not grow
with the file. A range that finds anything file-level (a bill whose lines fall in two
ranges, a blank line, a byte that does not decode, a trailer that does not add up, ...)
gives up, and map_aus maps the file by the line path, which names the exact error.
"""

from __future__ import annotations

import gc
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from icbridge.layouts.aus import CONTROL_BYTES, AusFile, AusSource, BodyRange, FileRejected, frame_body
from icbridge.mapping.bills import BillMapper, map_bills
from icbridge.mapping.lines import group_lines, key_fields
from icbridge.mapping.parts import PartWriter, Written
from icbridge.mapping.plan import Plan
from icbridge.mapping.tables import BlockTable, has_edge_spaces, make_table
from icbridge.mapping.types import Chunk, InvoiceSettings, MapStats, Reject
from icbridge.mapping.workers import in_order, share, shared

PARALLEL_MIN_BYTES = 12_000_000  # ~18,000 bills of the usual size
# bytes per task (~6,000 bills). Small tasks even out the 2 workers and cap each worker's
# memory: 250 MB at 250k bills, against 420 MB with 16 MB tasks (docs/benchmarks.md).
CHUNK_BYTES = 4_000_000


@dataclass
class RangeResult:
    """What one byte range gave: its figures for the trailer check and its mapped bills."""

    lines: int
    bills: int  # bills that start in the range (orphans not included)
    orphans: list[Reject]
    total: Decimal
    key_hashes: array  # hash of each bill's key: a bill in two ranges shows up as a repeat
    control_characters: int  # C0 control characters removed (as read_aus removes them)
    chunk: Chunk
    block_table: bool  # its lines were cut into a BlockTable


def map_ranges(
    source: AusSource,
    name: str,
    settings: InvoiceSettings,
    workers: int | None,
    staging: Path,
    day: date,
    range_bytes: int,
    stats: MapStats,
) -> Written | None:
    """The range path: ranges of about `range_bytes` mapped by workers, their parts written
    into `staging` as the results come back, in order. None when the file needs the line
    path (see the module docstring); `staging` may then hold parts, which the caller removes.
    Counts its tasks and block tables in `stats`."""
    framed = frame_body(source, name, settings.column_aliases)
    if framed is None:
        return None
    af, body = framed
    plan = Plan(af, settings)
    if workers is None:
        workers = (os.cpu_count() or 1) if body.stop - body.start >= PARALLEL_MIN_BYTES else 1
    writer = PartWriter(settings, name, staging, day)
    lines = bills = removed = 0
    total = Decimal(0)
    orphans: list[Reject] = []
    hashes: list[array] = []
    job = (af, settings, source, body.encoding, name)
    preload = None if source.path is None else [__name__, "numpy"]  # the workers' has_edge_spaces
    tasks = _ranges(source, body, plan, range_bytes)
    with in_order(_map_range, tasks, workers, _init_range_job, job, preload) as results:
        for result in results:
            stats.range_tasks += 1
            if result is None:
                return None
            stats.block_tables += result.block_table
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


def _ranges(source: AusSource, body: BodyRange, plan: Plan, range_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(start, stop, first line number) of each task, as they are found: ~range_bytes of
    whole lines, cut between two lines of different bills (a bill's lines are usually
    contiguous). Reads the file once, a range at a time, to count its lines."""
    start, line = body.start, 2  # line 1 is the header
    while start < body.stop:
        stop = body.stop
        if start + range_bytes < body.stop:
            stop = _bill_start_after(source, start + range_bytes, body.stop, plan)
        yield start, stop, line
        line += source.count(b"\n", start, stop)
        start = stop


def _bill_start_after(source: AusSource, pos: int, stop: int, plan: Plan) -> int:
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


def _raw_key(line: bytes, plan: Plan) -> tuple[bytes, bytes] | None:
    """(AccountNumber, BillNumber) of a raw line, or None when it is too short to have one."""
    fields = line.split(b"|", max(plan.acct_i, plan.bill_i) + 1)
    if len(fields) <= max(plan.acct_i, plan.bill_i):
        return None
    return fields[plan.acct_i].strip(), fields[plan.bill_i].strip()


def _init_range_job(af: AusFile, settings: InvoiceSettings, source: AusSource, encoding: str, name: str) -> None:
    """What every range task of one file shares (set in each worker, or here when serial)."""
    share((BillMapper(af, settings), source, encoding, name))


def _map_range(task: tuple[int, int, int]) -> RangeResult | None:
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


def _map_range_lines(task: tuple[int, int, int]) -> RangeResult | None:
    mapper, source, encoding, name = shared()
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
    spaced = has_edge_spaces(clean)
    del raw, clean
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    lines.pop()  # the range ends with a line break
    if not all(map(str.strip, lines)):  # a blank line: read_aus numbers and skips those
        return None
    numbers = range(first_line, first_line + len(lines))
    plain = "\t" not in text and "\r" not in text  # else split_line replaces (a CR left is not in a CR LF)
    table = make_table(text, lines, mapper.plan.n_fields, spaced or not plain, mapper.columnar.prefix)
    grouped = mapper.columnar.group(table, mapper.settings.bid) if plain and table else None
    if grouped is not None:
        bills, keys, total = grouped
        orphans: list[Reject] = []
    else:
        try:
            groups, orphans, total = group_lines(
                key_fields(lines, mapper.plan), numbers, mapper.plan, mapper.settings.bid, name
            )
        except FileRejected:
            return None
        bills, keys = list(groups.values()), list(groups)
    chunk = map_bills(mapper, lines, numbers, bills, table)
    return RangeResult(
        len(lines), len(bills), orphans, total, array("q", map(hash, keys)), removed, chunk,
        isinstance(table, BlockTable),
    )
