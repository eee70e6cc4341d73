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
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from icbridge.exports import safe_text, xlsx_text
from icbridge.reconcile.compare import OUTCOME_LABELS
from icbridge.state.balance_changes import Comparison
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
    """A CSV cell: money and counts as numbers, times as ISO 8601 in UTC with the offset
    (``2026-12-07T23:56:42+00:00``, the same from SQLite and PostgreSQL), text neutralised
    (icbridge.exports)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite keeps UTC naive
        return aware.astimezone(UTC).isoformat(timespec="seconds")
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


DATE_FORMAT = "mm/dd/yyyy hh:mm"
"""Times (a still-open item's ``open_since``) stay dates, in the biller's zone (Excel has none)."""
RESOLVED_COLUMNS = ("account_number", "invoice_number", "previous_outcome", "difference", "open_since")


def _local(value: datetime, tz: tzinfo | None) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite keeps UTC naive
    return aware.astimezone(tz or UTC).replace(tzinfo=None)


def write_xlsx(path: Path, run: RunRow, rows: Iterable[dict[str, Any]], *, comparison: Comparison | None = None,
               resolved_rows: Iterable[dict[str, Any]] = (), tz: tzinfo | None = None) -> int:
    """Write the workbook to ``path``: sheet "Summary" (with what changed against
    ``comparison``'s previous weekly run), "Items" (each with its change mark) and "Resolved"
    (reported by the previous weekly run, not by this one); returns the item count. Times are
    in ``tz`` (the biller's zone; UTC when None)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet("Summary")
    changes: list[tuple[str, Any]] = []
    if comparison is not None:
        changes = [("Compared with run", comparison.previous_run_id or "none (the first weekly run)"),
                   ("New since last week", comparison.new), ("Still open", comparison.still_open),
                   ("Resolved since last week", comparison.resolved)]
    for label, value in [*summary_rows(run), *changes]:
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
        items.append(_cells(items, values, money_at, tz))
        count += 1
    sheet = workbook.create_sheet("Resolved")
    sheet.append(list(RESOLVED_COLUMNS))
    resolved_money = [RESOLVED_COLUMNS.index("difference")]
    for row in resolved_rows:
        sheet.append(_cells(sheet, [row.get(c) for c in RESOLVED_COLUMNS], resolved_money, tz))
    workbook.save(path)
    return count


def _cells(sheet: Any, values: list[Any], money_at: list[int], tz: tzinfo | None) -> list[Any]:
    """One row's cells: text that can never run as a formula, money and times as numbers with
    their formats."""
    from openpyxl.cell import WriteOnlyCell

    cells: list[Any] = [xlsx_text(sheet, v) if isinstance(v, str) else v for v in values]
    for i, value in enumerate(values):
        if isinstance(value, datetime):
            cells[i] = WriteOnlyCell(sheet, value=_local(value, tz))
            cells[i].number_format = DATE_FORMAT
    for i in money_at:
        if isinstance(values[i], Decimal):
            cells[i] = WriteOnlyCell(sheet, value=values[i])
            cells[i].number_format = MONEY_FORMAT
    return cells
