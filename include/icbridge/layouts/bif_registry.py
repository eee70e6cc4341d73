"""The BIF field registry as data: row layouts from bif_fields.csv (IC's FileSpecIDs),
value formats from bif_formats.csv and length limits from bif_lengths.csv. A corrected IC
layout is a data change, not a code change. See ../shared/specs/bif.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

ROW_TYPES = ("FH", "IH", "CR", "ID")
KIND_PATTERN = {  # a formatted field's value, by its format (bif_formats.csv)
    "amount": r"-?\d+\.\d\d",
    "date": r"\d\d/\d\d/\d{4}",
    "flag": r"[01]",
    "int": r"\d+",
}


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
