"""Downloads of a run's items: CSV (streamed) and XLSX (openpyxl write-only), for 100k+ rows.

Why streaming: a run of a large utility can hold 100,000 non-matching accounts; the CSV is
produced chunk by chunk from a database cursor, and the XLSX is written row by row with
openpyxl's write-only mode (constant memory) into a temporary file that is then sent.
Columns are the item table's, in the same order; money stays exact (Decimal as text in the
CSV, a number with a 0.00 format in the XLSX). Text can never run as a formula: neutralised in
the CSV, string cells in the XLSX (icbridge.exports).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.exports import safe_text, xlsx_text
from icbridge.reconcile.compare import OUTCOME_LABELS
from icbridge.state.reconcile import ITEM_COLUMNS, RunRow

STATUS_LABELS = {
    "running": "running",
    "succeeded": "succeeded",
    "failed_threshold": "failed: CIS errors above the threshold",
    "failed": "failed",
    "interrupted": "interrupted",
}

MONEY_COLUMNS = {
    "ic_balance_due",
    "cis_balance",
    "difference",
    "ic_total_amount_due",
    "cis_future_balance",
    "total_difference",
}


def _text(value: Any) -> str:
    """A CSV cell: money and counts as numbers, text neutralised (icbridge.exports)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return safe_text(json.dumps(value, sort_keys=True))
    if isinstance(value, str):
        return safe_text(value)
    return str(value)


def csv_chunks(rows: Iterable[dict[str, Any]], rows_per_chunk: int = 1000) -> Iterator[bytes]:
    """The CSV (UTF-8, header first) in chunks of ``rows_per_chunk`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ITEM_COLUMNS)
    for count, row in enumerate(rows, start=1):
        writer.writerow([_text(row.get(column)) for column in ITEM_COLUMNS])
        if count % rows_per_chunk == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def summary_rows(run: RunRow) -> list[tuple[str, Any]]:
    """The run's summary as (label, value) pairs (XLSX first sheet, run page)."""
    return [
        ("Biller", run.biller_id),
        ("Week", run.week),
        ("Run", run.id),
        ("Airflow run", run.dag_run_id or ""),
        ("Started", run.started_at.isoformat(sep=" ", timespec="seconds") if run.started_at else ""),
        ("Finished", run.finished_at.isoformat(sep=" ", timespec="seconds") if run.finished_at else ""),
        ("Status", STATUS_LABELS.get(run.status, run.status)),
        ("Dry run", "yes (nothing corrected)" if run.dry_run else "no"),
        ("Accounts checked", run.accounts_checked),
        *((OUTCOME_LABELS.get(outcome, outcome), count) for outcome, count in run.counts.items()),
        ("Sum of absolute differences", run.sum_abs_difference),
        ("Net difference", run.net_difference),
        ("Corrections made", run.corrections_made),
        ("Corrections failed", run.corrections_failed),
        ("Error threshold %", run.error_threshold_pct),
        ("Message", run.message or ""),
    ]


MONEY_FORMAT = '"$"#,##0.00;-"$"#,##0.00'
"""Money cells stay numbers, shown as $1,234.56 / -$25.00 (the pages' rule, icbridge.web.reader)."""


def write_xlsx(path: Path, run: RunRow, rows: Iterable[dict[str, Any]]) -> int:
    """Write the workbook (sheet "Summary", sheet "Items") to ``path``; returns the item count."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet("Summary")
    for label, value in summary_rows(run):
        if isinstance(value, Decimal):  # a number, shown as money
            money_cell = WriteOnlyCell(summary, value=value)
            money_cell.number_format = MONEY_FORMAT
            summary.append([label, money_cell])
        else:
            summary.append([label, xlsx_text(summary, value) if isinstance(value, str) else value])
    items = workbook.create_sheet("Items")
    items.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for column in ITEM_COLUMNS:
        cell = WriteOnlyCell(items, value=column)
        cell.font = bold
        header.append(cell)
    items.append(header)
    money_at = [i for i, column in enumerate(ITEM_COLUMNS) if column in MONEY_COLUMNS]
    count = 0
    for row in rows:
        values: list[Any] = []
        for column in ITEM_COLUMNS:
            value = row.get(column)
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            values.append(value)
        cells: list[Any] = [xlsx_text(items, v) if isinstance(v, str) else v for v in values]
        for i in money_at:
            if isinstance(values[i], Decimal):
                cell = WriteOnlyCell(items, value=values[i])
                cell.number_format = MONEY_FORMAT
                cells[i] = cell
        items.append(cells)
        count += 1
    workbook.save(path)
    return count
