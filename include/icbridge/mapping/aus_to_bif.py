"""AUS IC Daily Export -> BIF: every column, constant, meter rule and rejection rule.

Driven by the column table (aus_columns.csv) and the BIF registry (bif_fields.csv): each
column has a type (its value rule), a level (bill, line or meter) and its BIF target(s).
Bills are grouped in order of first appearance, mapped bill by bill (or a column at a time),
and written as BIF parts into a staging folder that becomes visible only when the whole file
passed (its trailer is a control total over all of it): nothing partial is left.

The engine, one idea a module (docs/architecture.md, "The mapping engine"):

- types     settings, results (MapResult, BifPart, Reject, MapStats), a task's Chunk
- plan      a file's columns, conversions and BIF row templates, worked out once
- rules     each bill rule once, in its two forms: per bill, and over a whole range
- bills     the per-bill mapper, and map_bills (a task's bills, both ways)
- columnar  the column-at-a-time mapping of a range's common bills
- tables    the split rule and the flat tables of a range's fields
- lines     the line path (the whole file; every file-level error) and the grouping
- ranges    the range path (byte ranges in workers; memory bounded)
- parts     the BIF parts, written as chunks come, proven or checked
- workers   the process pools and what their tasks share

Two ways to the same bytes, rejects and warnings: the range path for a file in the common
shape, the line path for every other (``strategy``).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from pathlib import Path

from icbridge.layouts.aus import AusSource, FileRejected, parse_file_name
from icbridge.mapping.lines import map_lines
from icbridge.mapping.parts import PartWriter, check_part
from icbridge.mapping.ranges import CHUNK_BYTES, map_ranges
from icbridge.mapping.types import (
    DEFAULT_MAX_BYTES_PER_FILE,
    BifPart,
    InvoiceSettings,
    MapResult,
    MapStats,
    Reject,
    Strategy,
)
from icbridge.mapping.workers import run

__all__ = [
    "DEFAULT_MAX_BYTES_PER_FILE", "BifPart", "InvoiceSettings", "MapResult", "MapStats", "Reject", "Strategy",
    "map_aus",
]


def map_aus(
    source: bytes | Path,
    name: str,
    settings: InvoiceSettings,
    out_dir: Path,
    creation_date: date,
    workers: int | None = None,
    strategy: Strategy = "ranges",
    range_bytes: int = CHUNK_BYTES,
) -> MapResult:
    """Map one AUS file to BIF part(s) in out_dir. Raises FileRejected for file-level rules.

    `source`: the file's bytes, or its path. From a path, a file in the common shape is read
    by ranges and its parts are written as they are produced, so memory stays bounded
    whatever the file's size (docs/benchmarks.md, "Initial data dump"); a file that needs the
    line path is read whole. `workers`: processes for the per-bill work; by default every
    core for large files. `strategy`: ``ranges`` (the default, falling back to the line path
    for a file not in the common shape) or ``lines`` (always the line path; the two give the
    same bytes, rejects and warnings). `range_bytes`: the size of a range task.
    Returns the parts moved into out_dir, the rejects and warnings, and how it was mapped
    (MapResult.stats).
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
        stats = MapStats()
        written = None
        if strategy == "ranges":
            written = map_ranges(src, name, settings, workers, staging, creation_date, range_bytes, stats)
        if written is None:
            for leftover in staging.iterdir():  # parts of a range path that gave up
                leftover.unlink()
            mapped = map_lines(src.whole(), name, settings, workers)
            stats.strategy, stats.line_tasks = "lines", len(mapped.chunks)
            writer = PartWriter(settings, name, staging, creation_date)
            for chunk in mapped.chunks:
                writer.add(chunk)
            af = mapped.mapper.af
            written = writer.finish(af, mapped.bills, mapped.orphans, mapped.workers, af.control_characters)
        stats.workers, stats.per_bill = written.workers, written.per_bill
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
        stats.parts_rechecked = len(unproven)
        checked = run(check_part, [p.path for p in unproven], written.workers)
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
        written.af.unknown_columns, stats,
    )
