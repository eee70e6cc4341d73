"""What the AUS -> BIF mapping takes and gives: its settings, results and the figures of a run.

Shapes only, no behaviour beyond a summary: the mapping's modules (plan, rules, bills,
columnar, lines, ranges, parts, aus_to_bif) all speak these. See ../shared/specs/bif.md and
aus-daily-export.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

MAX_METERS = 25
METERS_PER_FIELD = 5
MAX_WARNINGS_KEPT = 1000
DEFAULT_MAX_BYTES_PER_FILE = 20 << 20
"""20 MiB a BIF part (about 27 MiB of base64 in the UploadInvoiceFile envelope)."""

Strategy = Literal["ranges", "lines"]
"""How map_aus reads a file: ``ranges`` (the default: byte ranges mapped by workers, a
column at a time where it can, falling back to ``lines`` for a file not in that shape) or
``lines`` (the whole file read and every bill mapped by the per-bill mapper)."""


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
    """A bill (or a short line naming none) left out of the BIF: its source line numbers
    (1-based, the header is line 1), keys as read, and the rule it broke."""

    lines: list[int]
    account: str
    bill: str
    reason: str


@dataclass
class BifPart:
    """One BIF file written: name, where it is, invoices in it, their total, sha256 hex."""

    name: str
    path: Path
    invoices: int
    total: Decimal
    sha256: str


@dataclass
class MapStats:
    """How a file was mapped (for logs and tests; the output never depends on it).

    ``strategy``: the path that produced the parts (``ranges`` or ``lines``);
    ``range_tasks`` / ``line_tasks``: tasks each path ran (a range path that gave up still
    counts its tasks); ``workers``: processes of the path that produced the parts;
    ``per_bill``: bills mapped by the per-bill mapper (the rest a column at a time);
    ``block_tables``: ranges cut into a BlockTable; ``parts_rechecked``: parts whose rows
    were not proven where they were built, so check_bif read them again."""

    strategy: Strategy = "ranges"
    range_tasks: int = 0
    line_tasks: int = 0
    workers: int = 1
    per_bill: int = 0
    block_tables: int = 0
    parts_rechecked: int = 0


@dataclass
class MapResult:
    source: str
    bills_read: int
    bifs: list[BifPart]
    rejects: list[Reject]
    warnings: list[dict]
    warning_counts: dict[str, int]
    unknown_columns: list[str]
    stats: MapStats = field(default_factory=MapStats)

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
class Chunk:
    """One task's mapped bills: their BIF text as UTF-8 bytes (one buffer crosses from a
    worker to the parent, not a string per invoice), the end offset and TotalAmountDue of
    each invoice in it, the IH totals as check_bif reads them when its rows are proven to
    pass (bif_proof.invoice_totals; else None), its rejects, warnings (capped), warning
    counts, and how many of its bills the per-bill mapper took."""

    text: bytes
    ends: list[int]
    amounts: list[str]
    totals: list[str] | None
    rejects: list[Reject]
    warnings: list[dict]
    warning_counts: dict[str, int]
    per_bill: int
