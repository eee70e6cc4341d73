"""The BIF parts of a mapped file: written to staging as the mapped chunks come, in order,
each at most max_invoices_per_file invoices and max_bytes_per_file bytes, with its FH row,
proven (or checked) against the pre-upload rules. See ../shared/specs/bif.md.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from icbridge.layouts.aus import AusFile
from icbridge.layouts.bif import check_bif, encode_row, registry
from icbridge.layouts.bif_proof import fh_passes
from icbridge.mapping.types import MAX_WARNINGS_KEPT, BifPart, Chunk, InvoiceSettings, Reject

FH_ROOM = 256  # bytes kept for a part's FH row when sizing it


def check_part(path: Path) -> list[str]:
    """check_bif on a written part (its problems; empty: uploadable)."""
    return check_bif(path.read_bytes(), path.name)


@dataclass
class Written:
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
    per_bill: int  # bills the per-bill mapper took


class PartWriter:
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
        self.per_bill = 0

    def add(self, chunk: Chunk) -> None:
        blob, ends, chunk_amounts, chunk_totals = chunk.text, chunk.ends, chunk.amounts, chunk.totals
        warnings, counts = chunk.warnings, chunk.warning_counts
        self.per_bill += chunk.per_bill
        settings = self.settings
        self.rejects.extend(chunk.rejects)
        room = MAX_WARNINGS_KEPT - len(self.warnings)
        self.warnings.extend(warnings[: max(room, 0)])
        for key, n in counts.items():
            self.warning_counts[key] = self.warning_counts.get(key, 0) + n
        view, done = memoryview(blob), 0  # invoices of this chunk already in a part
        while done < len(ends):
            take = min(settings.max_invoices_per_file - len(self.amounts), len(ends) - done)
            start = ends[done - 1] if done else 0
            room = start + settings.max_bytes_per_file - FH_ROOM - self.size  # the last end offset that fits
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
        part, ok = write_part(
            self.settings, self.stem, len(self.parts) + 1, self.body, self.amounts, self.totals, self.staging, self.day
        )
        self.parts.append(part)
        self.proven.append(ok)
        self.body, self.amounts, self.totals, self.size = [], [], [], 0

    def finish(
        self, af: AusFile, bills: int, orphans: list[Reject], workers: int, control_characters: int
    ) -> Written:
        """Write the last part (a file of one part drops the _01 from its name)."""
        if self.amounts:
            self._write()
        if len(self.parts) == 1:
            single = self.parts[0]
            single.name = f"{self.stem}.BIF"
            renamed = self.staging / single.name
            single.path.replace(renamed)
            single.path = renamed
        return Written(
            af, bills, [*orphans, *self.rejects], self.parts, self.proven, self.warnings, self.warning_counts, workers,
            control_characters, self.per_bill,
        )


def write_part(
    settings: InvoiceSettings,
    stem: str,
    number: int,
    body: Sequence[bytes | memoryview],
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
