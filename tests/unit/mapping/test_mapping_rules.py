"""Each bill rule (icbridge.mapping.rules) rejects the same bills with the same message on
both paths: one generated equivalence case per rule in RULES, on a file where every 40th bill
breaks it, mapped by the range path (small ranges, a column at a time) and the line path
(every bill by the per-bill mapper). A rule added without a case here fails the first test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from icbridge.mapping.aus_to_bif import InvoiceSettings, MapResult, map_aus
from icbridge.mapping.rules import RULES
from icbsim import aus_files

NAME = "123_20261101_UB.TXT"
DAY = date(2026, 11, 1)
SETTINGS = InvoiceSettings(
    bid="123", biller_guid="G-1", invoice_format_guid="F-1", invoice_type_id="1", reject_threshold_pct=100,
    max_invoices_per_file=300,
)
Rows = list[dict[str, str]]


def _bills(rows: Rows) -> list[Rows]:
    """The rows of each bill, in file order (each bill's lines are together)."""
    bills: dict[tuple[str, str], Rows] = {}
    for r in rows:
        bills.setdefault((r["AccountNumber"], r["BillNumber"]), []).append(r)
    return list(bills.values())


def _set(column: str, value: str) -> Callable[[Rows], None]:
    def change(bill: Rows) -> None:
        for r in bill:
            r[column] = value
    return change


def _later_line_disagrees(bill: Rows) -> None:
    if len(bill) > 1:
        bill[-1]["CustomerName"] = bill[0]["CustomerName"] + " Jr"


def _extra_field(bill: Rows) -> None:
    bill[-1]["ServiceDescription"] = "Water|Sewer"  # one more field than the header


def _line_too_long(bill: Rows) -> None:
    bill[-1]["ServiceDescription"] = "D" * 101


def _line_numbers_reversed(bill: Rows) -> None:
    """Not a reject: the per-bill mapper writes the ID rows in LineNumber order."""
    numbers = [r["LineNumber"] for r in bill]
    for r, n in zip(bill, reversed(numbers), strict=True):
        r["LineNumber"] = n


def _line_number_repeated(bill: Rows) -> None:
    bill[-1]["LineNumber"] = bill[0]["LineNumber"] if len(bill) > 1 else "0"


# rule name -> (ways to break it, what the reject says; None: the bill is kept)
CASES: dict[str, list[tuple[Callable[[Rows], None], str | None]]] = {
    "field count": [(_extra_field, "fields, the header has")],
    "bill columns agree": [(_later_line_disagrees, "disagrees with line")],
    "required values": [(_set("CustomerName", ""), "missing required value CustomerName")],
    "bill value length": [(_set("CustomerName", "C" * 101), "CustomerName is 101 characters long")],
    "line value length": [(_line_too_long, "ServiceDescription is 101 characters long")],
    "line numbers": [(_line_numbers_reversed, None), (_line_number_repeated, "LineNumber")],
}


def test_every_rule_has_an_equivalence_case():
    assert sorted(rule.name for rule in RULES) == sorted(CASES)


def _same_output(a: MapResult, b: MapResult) -> None:
    assert [(p.name, p.invoices, p.sha256) for p in a.bifs] == [(p.name, p.invoices, p.sha256) for p in b.bifs]
    assert a.rejects == b.rejects
    assert a.warnings == b.warnings and a.warning_counts == b.warning_counts


@pytest.mark.parametrize(
    ("rule", "case"), [(name, n) for name, cases in CASES.items() for n in range(len(cases))],
    ids=lambda v: str(v).replace(" ", "-"),
)
def test_a_rule_gives_the_same_output_on_both_paths(tmp_path: Path, rule: str, case: int):
    change, says = CASES[rule][case]
    bills = _bills(aus_files.make_rows(1_200, seed=11))
    broken = []
    for bill in bills[7::40]:
        before = [dict(r) for r in bill]
        change(bill)
        if bill != before:  # a one-line bill cannot break some rules
            broken.append(bill)
    assert len(broken) >= 10
    data = aus_files.format_file([r for b in bills for r in b])
    settings = dataclasses.replace(SETTINGS)
    by_ranges = map_aus(data, NAME, settings, tmp_path / "ranges", DAY, workers=1, range_bytes=30_000)
    by_lines = map_aus(data, NAME, settings, tmp_path / "lines", DAY, workers=1, strategy="lines")
    _same_output(by_ranges, by_lines)
    assert by_lines.stats.per_bill == len(bills)
    if rule == "field count":  # a range with a short or long line is mapped bill by bill
        assert by_ranges.stats.per_bill < len(bills)
    else:  # the flagged bills only
        assert by_ranges.stats.per_bill == len(broken)
    if says is None:
        assert by_ranges.rejects == [] and by_ranges.accepted == len(bills)
    else:
        assert len(by_ranges.rejects) == len(broken)
        assert all(says in r.reason for r in by_ranges.rejects), by_ranges.rejects[:3]
